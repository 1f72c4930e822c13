-- Activation fates of every feature (of an ingested SAE), from the stored correlations:
--   pass_through(i at l):  max_j pearson(i, j at the next layer) >= var(pass_through_threshold)
--   disappearing(i at l):  not pass_through: no feature of the next layer reaches the
--                          threshold (including features with no stored correlation);
--   appearing(j at l'):    max_i pearson(i at the previous layer, j) < the threshold
--                          (including features with no stored correlation).
-- pass_through/disappearing are NULL at layers with no correlations to a next layer, and
-- appearing is NULL at layers with no correlations from a previous layer.
with correlations as (
    select * from {{ ref('stg_lake__correlations') }}
),

outgoing as (
    select release, src_layer as layer, src_feature as feature, max(pearson) as max_pearson_out
    from correlations
    group by release, src_layer, src_feature
),

incoming as (
    select release, dst_layer as layer, dst_feature as feature, max(pearson) as max_pearson_in
    from correlations
    group by release, dst_layer, dst_feature
),

src_layers as (
    select distinct release, src_layer as layer, dst_layer as next_layer from correlations
),

dst_layers as (
    select distinct release, dst_layer as layer, src_layer as previous_layer from correlations
),

flags as (
    select
        f.release,
        f.layer,
        f.feature,
        sl.next_layer,
        dl.previous_layer,
        o.max_pearson_out,
        i.max_pearson_in,
        case when sl.layer is not null then
            coalesce(o.max_pearson_out >= {{ var('pass_through_threshold') }}, false)
        end as pass_through,
        case when dl.layer is not null then
            not coalesce(i.max_pearson_in >= {{ var('pass_through_threshold') }}, false)
        end as appearing
    from {{ ref('int_features') }} as f
    left join src_layers as sl
        on sl.release = f.release and sl.layer = f.layer
    left join dst_layers as dl
        on dl.release = f.release and dl.layer = f.layer
    left join outgoing as o
        on o.release = f.release and o.layer = f.layer and o.feature = f.feature
    left join incoming as i
        on i.release = f.release and i.layer = f.layer and i.feature = f.feature
)

select
    release,
    layer,
    feature,
    next_layer,
    previous_layer,
    max_pearson_out,
    max_pearson_in,
    pass_through,
    not pass_through as disappearing,
    appearing
from flags
