select
    release,
    space,
    method,
    src_layer,
    src_feature,
    dst_layer,
    dst_feature,
    cost,
    cosine
from {{ source('lake', 'matches') }}
