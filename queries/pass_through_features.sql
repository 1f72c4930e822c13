-- Pass-through features: features whose activation is carried to the next layer almost
-- unchanged (max_j pearson >= dbt var pass_through_threshold, 0.95), with the best partner at
-- the next layer, its sufficiency and necessity, and both descriptions.
-- Run: saew query queries/pass_through_features.sql
with best as (
    select
        f.*,
        row_number() over (partition by f.release, f.src_layer, f.src_feature
                           order by f.pearson desc, f.dst_feature) as rank_for_source
    from fct_feature_flow as f
)

select
    a.release,
    a.layer,
    a.feature,
    b.dst_layer,
    b.dst_feature,
    round(b.pearson, 4) as pearson,
    round(b.sufficiency, 4) as sufficiency,
    round(b.necessity, 4) as necessity,
    round(b.jaccard, 4) as jaccard,
    src.description as description,
    dst.description as dst_description
from fct_feature_fates_activation as a
join best as b
    on b.release = a.release and b.src_layer = a.layer and b.src_feature = a.feature
    and b.rank_for_source = 1
left join dim_features as src
    on src.release = a.release and src.layer = a.layer and src.feature = a.feature
left join dim_features as dst
    on dst.release = b.release and dst.layer = b.dst_layer and dst.feature = b.dst_feature
where a.pass_through
order by a.release, a.layer, b.pearson desc, a.feature
