-- The feature browser: each feature's lineage along every match link (fct_feature_lineage; the
-- null model's links left out), up to var(browse_lineage_steps) steps each way:
--   forward, distance d: the feature reached after d matches (the lineage row of this root at
--     depth d); step_cosine is the cosine of the match into it (step d-1 -> d);
--   backward, distance d: the feature whose lineage reaches this one at depth d; step_cosine is
--     the cosine of the match leaving it (its lineage row at depth 1).
-- other_description is the other feature's description.
with links as (
    select release, link from {{ ref('dim_links') }}
    where link_kind = 'match' and link_method <> '{{ var("null_method") }}'
),

lineage as (
    select l.*
    from {{ ref('fct_feature_lineage') }} as l
    inner join links as k
        on k.release = l.release and k.link = l.link
    where l.depth between 1 and {{ var('browse_lineage_steps', 3) }}
),

first_steps as (
    select release, link, root_layer, root_feature, step_cosine
    from {{ ref('fct_feature_lineage') }}
    where depth = 1
),

forward as (
    select
        release, link, root_layer as layer, root_feature as feature, 'forward' as direction,
        depth as distance, layer as other_layer, feature as other_feature, step_cosine
    from lineage
),

backward as (
    select
        l.release, l.link, l.layer, l.feature, 'backward' as direction, l.depth as distance,
        l.root_layer as other_layer, l.root_feature as other_feature, s.step_cosine
    from lineage as l
    left join first_steps as s
        on s.release = l.release and s.link = l.link
        and s.root_layer = l.root_layer and s.root_feature = l.root_feature
)

select
    x.release,
    x.link,
    x.layer,
    x.feature,
    x.direction,
    x.distance,
    x.other_layer,
    x.other_feature,
    x.step_cosine,
    d.description as other_description
from (select * from forward union all select * from backward) as x
left join {{ ref('stg_lake__descriptions') }} as d
    on d.release = x.release and d.layer = x.other_layer and d.feature = x.other_feature
order by x.release, x.layer, x.feature, x.link, x.direction desc, x.distance
