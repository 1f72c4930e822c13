-- Every link of every release, with its parts as columns (nothing downstream parses a link name):
--   match/<space>/<method>     for each (space, method) in `matches`;
--   transport/<space>/<solver> for each (space, solver) in `transport`.
-- null_draw: the draw index of a null-model match (macro null_draw: `random` is draw 0,
-- `random.<i>` draw i; NULL for every other link, transport included); is_null = a null draw.
-- This is the one place that recognises null draws: int_links and int_link_pairs carry the
-- columns to the marts. link_id: a small integer per (release, link) for joins.
with links as (
    select distinct release, 'match' as link_kind, link_space, link_method
    from {{ ref('stg_lake__matches') }}
    union all
    select distinct release, 'transport' as link_kind, link_space, link_method
    from {{ ref('stg_lake__transport') }}
),

named as (
    select
        release,
        {{ link_name('link_kind', 'link_space', 'link_method') }} as link,
        link_kind,
        link_space,
        link_method,
        case when link_kind = 'match' then {{ null_draw('link_method') }} end as null_draw
    from links
)

select
    {{ surrogate_id(['release', 'link']) }} as link_id,
    release,
    link,
    link_kind,
    link_space,
    link_method,
    null_draw is not null as is_null,
    null_draw
from named
