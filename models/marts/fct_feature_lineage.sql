-- For every lineage link (match/<space>/<method>, int_lineage_links: null draws after the
-- first are skipped) and every feature at every layer of the
-- release (the root), its chain of matches forward to the last layer:
--   depth 0 is the root itself (step_cost, step_cosine NULL; cum_cost 0);
--   depth d is the feature matched to the one at depth d - 1 (step_cost = that match's cost,
--   step_cosine its cosine, cum_cost the sum of step costs so far);
--   the chain stops where a feature has no match.
-- Portable SQL: the recursion is unrolled with a Jinja loop, one join per depth, up to the
-- longest chain in the data (macro lineage_max_depth; var lineage_max_depth overrides it).
-- A recursive-CTE version is queries/feature_lineage_recursive.sql.
-- The joins compare integers (link_id, node keys) and the rows are sorted by
-- (link, root_layer, root_feature, depth), so one root's lineage is a small contiguous range
-- that min/max pruning finds quickly.
-- depends_on: {{ ref('int_match_steps') }}  (the loop below refs it only at run time)
{%- set max_depth = lineage_max_depth() %}

with depth_0 as (
    select
        l.link_id,
        f.layer as root_layer,
        f.feature as root_feature,
        0 as depth,
        f.layer,
        f.feature,
        {{ node_key('f.layer', 'f.feature') }} as node_key,
        cast(null as {{ saew_double() }}) as step_cost,
        cast(0 as {{ saew_double() }}) as cum_cost,
        cast(null as {{ saew_double() }}) as step_cosine
    from {{ ref('int_features') }} as f
    inner join {{ ref('int_lineage_links') }} as l
        on l.release = f.release
),
{%- for d in range(1, max_depth + 1) %}

depth_{{ d }} as (
    select
        p.link_id,
        p.root_layer,
        p.root_feature,
        {{ d }} as depth,
        m.dst_layer as layer,
        m.dst_feature as feature,
        m.dst_key as node_key,
        m.cost as step_cost,
        p.cum_cost + m.cost as cum_cost,
        m.cosine as step_cosine
    from depth_{{ d - 1 }} as p
    inner join {{ ref('int_match_steps') }} as m
        on m.link_id = p.link_id
        and m.src_key = p.node_key
),
{%- endfor %}

chains as (
    {%- for d in range(0, max_depth + 1) %}
    select * from depth_{{ d }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

descriptions as (
    select
        l.link_id,
        {{ node_key('d.layer', 'd.feature') }} as node_key,
        d.description
    from {{ ref('stg_lake__descriptions') }} as d
    inner join {{ ref('int_lineage_links') }} as l
        on l.release = d.release
)

select
    l.release,
    l.link,
    c.root_layer,
    c.root_feature,
    c.depth,
    c.layer,
    c.feature,
    c.step_cost,
    c.cum_cost,
    c.step_cosine,
    d.description
from chains as c
inner join {{ ref('int_lineage_links') }} as l
    on l.link_id = c.link_id
left join descriptions as d
    on d.link_id = c.link_id and d.node_key = c.node_key
order by c.link_id, c.root_layer, c.root_feature, c.depth
