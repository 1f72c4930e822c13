-- The match links the lineage follows: every match link except the null draws after the first
-- (contract section 6: lineage marts skip `random.<i>`; `random`, draw 0, stays as the null).
select
    link_id,
    release,
    link_space,
    link_method,
    link
from {{ ref('dim_links') }}
where link_kind = 'match'
    and coalesce(null_draw, 0) = 0
