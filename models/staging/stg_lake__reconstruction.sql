select
    release,
    space as link_space,
    method as link_method,
    src_layer,
    dst_layer,
    n_tokens,
    fvu,
    explained_variance
from {{ source('lake', 'reconstruction') }}
