select
    release,
    layer,
    feature,
    kind,
    rank,
    token_id,
    tokens,
    acts,
    peak,
    value
from {{ source('lake', 'examples') }}
