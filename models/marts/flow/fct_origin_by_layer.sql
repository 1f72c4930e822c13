-- Shares of origins per residual layer: for every (release, layer) of fct_feature_origin and
-- every origin of dim_flow_origins (an origin no feature has gets n = 0),
--   n = #features of the layer with that origin,  share = n / #features of the layer
-- (the shares of a layer sum to 1).
with layers as (
    select release, layer, count(*) as n_features
    from {{ ref('fct_feature_origin') }}
    group by release, layer
),

counts as (
    select release, layer, origin, count(*) as n
    from {{ ref('fct_feature_origin') }}
    group by release, layer, origin
)

select
    l.release,
    l.layer,
    o.origin,
    coalesce(c.n, 0) as n,
    cast(coalesce(c.n, 0) as double) / l.n_features as share
from layers as l
cross join {{ ref('dim_flow_origins') }} as o
left join counts as c
    on c.release = l.release and c.layer = l.layer and c.origin = o.origin
order by l.release, l.layer, o.tie_order
