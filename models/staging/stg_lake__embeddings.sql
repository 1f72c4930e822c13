select
    release,
    layer,
    feature,
    embedder,
    embedding
from {{ source('lake', 'embeddings') }}
