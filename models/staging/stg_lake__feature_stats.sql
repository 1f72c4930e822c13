select
    release,
    layer,
    feature,
    max_act,
    frac_nonzero,
    pos_str,
    pos_values,
    neg_str,
    neg_values,
    topk_cos_indices,
    topk_cos_values,
    source
from {{ source('lake', 'feature_stats') }}
