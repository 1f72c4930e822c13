select
    release,
    space,
    method,
    src_layer,
    dst_layer,
    n_tokens,
    fvu,
    explained_variance
from {{ source('lake', 'reconstruction') }}
