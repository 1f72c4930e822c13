select
    release,
    link,
    src_release,
    src_layer,
    src_feature,
    dst_release,
    dst_layer,
    dst_feature,
    n_tokens,
    act_before,
    act_after,
    control_before,
    control_after
from {{ source('lake', 'interventions') }}
