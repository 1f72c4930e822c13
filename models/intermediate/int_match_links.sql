-- Every (space, method) present in `matches`, as the link `match/<space>/<method>`, with a
-- small integer id (link_id) that the lineage joins use instead of (release, link).
with links as (
    select distinct
        release,
        space as link_space,
        method as link_method
    from {{ ref('stg_lake__matches') }}
)

select
    dense_rank() over (order by release, link_space, link_method) as link_id,
    release,
    link_space,
    link_method,
    {{ link_name('match', 'link_space', 'link_method') }} as link
from links
