select
    release,
    layer,
    feature_a,
    feature_b,
    n_ab,
    n_a,
    n_b
from {{ source('lake', 'coactivations') }}
