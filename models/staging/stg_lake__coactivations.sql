select
    release,
    layer,
    feature_a,
    feature_b,
    n_ab
from {{ source('lake', 'coactivations') }}
