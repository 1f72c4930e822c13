-- Transported masses are non-negative.
select *
from {{ ref('stg_lake__transport') }}
where mass < 0
