select
    release,
    shard,
    token_id,
    doc,
    pos,
    token
from {{ source('lake', 'tokens') }}
