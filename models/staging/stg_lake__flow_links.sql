select
    release,
    dst_layer,
    dst_feature,
    src_release,
    src_layer,
    src_feature,
    module,
    rank,
    cosine
from {{ source('lake', 'flow_links') }}
