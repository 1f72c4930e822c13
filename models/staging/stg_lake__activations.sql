select
    release,
    layer,
    token_id,
    feature,
    value
from {{ source('lake', 'activations') }}
