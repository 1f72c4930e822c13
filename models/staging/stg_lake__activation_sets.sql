select
    release,
    layer,
    n_tokens,
    source,
    run_id
from {{ source('lake', 'activation_sets') }}
