-- Origin of every feature of a residual layer l' (Feature Flow, Laptev et al. 2025), from its
-- rank-1 predecessor in each module (flow_links: the previous residual layer, the block's MLP
-- output and attention output SAEs):
--   best_cosine = max over modules of the rank-1 cosine,
--   origin      = the module of that predecessor (resid | mlp | attn) when best_cosine >=
--                 var('flow_origin_threshold'), else 'nowhere'; ties between modules go to
--                 the lower tie_order of dim_flow_origins (resid, mlp, attn).
-- resid_cosine / mlp_cosine / attn_cosine: each module's rank-1 cosine (NULL without that
-- module's SAE at the layer).
with top1 as (
    select
        l.release,
        l.dst_layer as layer,
        l.dst_feature as feature,
        l.module,
        o.origin,
        o.tie_order,
        l.cosine
    from {{ ref('stg_lake__flow_links') }} as l
    join {{ ref('dim_flow_origins') }} as o on o.module = l.module
    where l.rank = 1
),

per_feature as (
    select
        release,
        layer,
        feature,
        arg_min(origin, [-cosine, tie_order]) as best_origin,
        max(cosine) as best_cosine,
        max(cosine) filter (where origin = 'resid') as resid_cosine,
        max(cosine) filter (where origin = 'mlp') as mlp_cosine,
        max(cosine) filter (where origin = 'attn') as attn_cosine
    from top1
    group by release, layer, feature
)

select
    release,
    layer,
    feature,
    case when best_cosine >= {{ var('flow_origin_threshold') }} then best_origin
         else (select origin from {{ ref('dim_flow_origins') }} where module is null) end as origin,
    best_cosine,
    resid_cosine,
    mlp_cosine,
    attn_cosine
from per_feature
