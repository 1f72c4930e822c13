-- N: the number of tokens harvested per release and layer (active or not).
select
    release,
    layer,
    n_tokens
from {{ ref('stg_lake__activation_sets') }}
