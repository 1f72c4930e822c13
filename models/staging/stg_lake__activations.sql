select
    release,
    layer,
    shard,
    token_id,
    feature,
    value
from {{ source('lake', 'activations') }}
