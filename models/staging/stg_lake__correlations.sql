select
    release,
    src_layer,
    src_feature,
    dst_layer,
    dst_feature,
    n_src,
    n_dst,
    n_both,
    pearson
from {{ source('lake', 'correlations') }}
