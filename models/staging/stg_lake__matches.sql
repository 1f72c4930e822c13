select
    release,
    space as link_space,
    method as link_method,
    src_layer,
    src_feature,
    dst_layer,
    dst_feature,
    cost,
    cosine
from {{ source('lake', 'matches') }}
