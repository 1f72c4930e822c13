-- Clusters that split at a layer: source clusters with at least two destination clusters each
-- receiving >= 20 % of their members (fct_cluster_fates.split), with the destinations they
-- split into (fct_cluster_transitions, share_of_src >= the split threshold).
-- Run: saew query queries/clusters_that_split.sql
-- Edit `params` to choose the layer and link (NULL: every layer, every match link).
with params as (
    select cast(null as integer) as src_layer, cast(null as varchar) as link
)

select
    f.release,
    f.cluster_space,
    f.link,
    f.src_layer,
    f.src_cluster,
    f.size,
    round(f.purity, 4) as purity,
    round(f.h_cond, 4) as h_cond,
    t.dst_layer,
    t.dst_cluster,
    t.flow,
    round(t.share_of_src, 4) as share_of_src
from fct_cluster_fates as f
cross join params as p
join fct_cluster_transitions as t
    on t.pair_id = f.pair_id and t.src_cluster = f.src_cluster
where f.split
    and t.share_of_src >= 0.2
    and (p.src_layer is null or f.src_layer = p.src_layer)
    and (p.link is null or f.link = p.link)
    and (p.link is not null or f.link like 'match/%')
order by f.release, f.cluster_space, f.link, f.src_layer, f.src_cluster, t.share_of_src desc
