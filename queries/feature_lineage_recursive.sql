-- A feature's lineage computed straight from `matches` with a recursive CTE (DuckDB / Postgres
-- syntax) -- the textbook version of what the dbt model fct_feature_lineage unrolls with a Jinja
-- loop over layers. Same columns and rows as fct_feature_lineage for one root.
-- Run: saew query queries/feature_lineage_recursive.sql
-- Edit the `params` CTE to pick the root (NULLs: first release, decoder/folded or the first
-- (space, method), layer 0, feature 0).
with recursive params as (
    select
        cast(null as varchar) as release,
        cast(null as varchar) as space,
        cast(null as varchar) as method,
        cast(null as integer) as root_layer,
        cast(null as integer) as root_feature
),

chosen as (
    select
        coalesce(p.release, (select min(release) from matches)) as release,
        coalesce(p.space, (select min(space) from matches where space = 'decoder' and method = 'folded'),
                 (select min(space) from matches)) as space,
        coalesce(p.method, (select min(method) from matches where space = 'decoder' and method = 'folded'),
                 (select min(method) from matches where space = (select min(space) from matches))) as method,
        coalesce(p.root_layer, 0) as root_layer,
        coalesce(p.root_feature, 0) as root_feature
    from params as p
),

chain(release, space, method, depth, layer, feature, step_cost, cum_cost, step_cosine) as (
    select release, space, method, 0, root_layer, root_feature,
        cast(null as double), cast(0 as double), cast(null as double)
    from chosen
    union all
    select c.release, c.space, c.method, c.depth + 1, m.dst_layer, m.dst_feature,
        m.cost, c.cum_cost + m.cost, m.cosine
    from chain as c
    join matches as m
        on m.release = c.release and m.space = c.space and m.method = c.method
        and m.src_layer = c.layer and m.src_feature = c.feature
)

select
    'match/' || c.space || '/' || c.method as link,
    c.depth,
    c.layer,
    c.feature,
    c.step_cost,
    c.cum_cost,
    c.step_cosine,
    d.description
from chain as c
left join descriptions as d
    on d.release = c.release and d.layer = c.layer and d.feature = c.feature
order by c.depth
