-- Where the features of each residual layer come from (Feature Flow, issue 19): per release and
-- layer, the share of features whose best predecessor by decoder cosine is in the residual
-- layer before (resid), the block's MLP output (mlp) or attention output (attn), or who have
-- none above var('flow_origin_threshold') (nowhere); from fct_origin_by_layer, with the mean
-- best cosine of the layer's features (fct_feature_origin). Needs saew flow and saew build.
-- Run: saew query queries/feature_origin_by_layer.sql
with shares as (
    select
        release,
        layer,
        sum(n) as n_features,
        max(share) filter (where origin = 'resid') as resid,
        max(share) filter (where origin = 'mlp') as mlp,
        max(share) filter (where origin = 'attn') as attn,
        max(share) filter (where origin = 'nowhere') as nowhere
    from fct_origin_by_layer
    group by release, layer
),

cosines as (
    select release, layer, avg(best_cosine) as mean_best_cosine
    from fct_feature_origin
    group by release, layer
)

select
    s.release,
    s.layer,
    s.n_features,
    round(s.resid, 3) as resid,
    round(s.mlp, 3) as mlp,
    round(s.attn, 3) as attn,
    round(s.nowhere, 3) as nowhere,
    round(c.mean_best_cosine, 3) as mean_best_cosine
from shares as s
join cosines as c on c.release = s.release and c.layer = s.layer
order by s.release, s.layer
