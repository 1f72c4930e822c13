-- The sources of cluster flows, per release and cluster space:
--   match/<space>/<method>   for every (space, method) in `matches`, crossed with every
--                            cluster space present in `clusters` for the release;
--   transport/<space>/<solver> for every (space, solver) in `transport`, only with its own
--                            cluster space.
with cluster_spaces as (
    select distinct release, space as cluster_space
    from {{ ref('stg_lake__clusters') }}
),

transport_links as (
    select distinct release, space as link_space, solver as link_method
    from {{ ref('stg_lake__transport') }}
)

select
    m.release,
    c.cluster_space,
    m.link,
    'match' as link_kind,
    m.link_space,
    m.link_method
from {{ ref('int_match_links') }} as m
inner join cluster_spaces as c
    on c.release = m.release

union all

select
    t.release,
    t.link_space as cluster_space,
    {{ link_name('transport', 't.link_space', 't.link_method') }} as link,
    'transport' as link_kind,
    t.link_space,
    t.link_method
from transport_links as t
