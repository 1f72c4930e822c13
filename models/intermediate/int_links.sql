-- The sources of cluster flows, per release and cluster space (dim_links crossed with the
-- cluster spaces present in `clusters` for the release):
--   match/<space>/<method>     with every cluster space (null draws included: they are the null);
--   transport/<space>/<solver> only with its own cluster space.
with cluster_spaces as (
    select distinct release, cluster_space
    from {{ ref('stg_lake__clusters') }}
)

select
    l.link_id,
    l.release,
    c.cluster_space,
    l.link,
    l.link_kind,
    l.link_space,
    l.link_method,
    l.is_null,
    l.null_draw
from {{ ref('dim_links') }} as l
inner join cluster_spaces as c
    on c.release = l.release
where l.link_kind = 'match'
    or c.cluster_space = l.link_space
