select
    release,
    layer,
    model,
    hook,
    d_in,
    d_sae,
    architecture,
    k,
    normalize,
    b_dec,
    apply_b_dec_to_input,
    source_format,
    source_path,
    source_sha256,
    run_id,
    ingested_at
from {{ source('lake', 'saes') }}
