-- SAE training curves per release and layer (training_log): x = tokens seen (the step where
-- tokens_seen is NULL), with fvu, L0 and the dead-feature fraction.
select
    release,
    layer,
    step,
    {{ as_double('coalesce(tokens_seen, step)') }} as x,
    fvu,
    l0,
    dead_frac
from {{ ref('stg_lake__training_log') }}
