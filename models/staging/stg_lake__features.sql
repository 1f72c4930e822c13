select
    release,
    layer,
    feature,
    w_enc,
    b_enc,
    w_dec,
    threshold,
    dec_norm
from {{ source('lake', 'features') }}
