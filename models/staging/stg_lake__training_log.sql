select
    release,
    layer,
    step,
    tokens_seen,
    mse,
    fvu,
    l0,
    dead_frac
from {{ source('lake', 'training_log') }}
