-- The SAEs of every release, one row per layer: the report's release table and its check that a
-- release exists. A view over staging, so it follows the lake: an SAE ingested after the last
-- build is listed (its marts are empty until the next build).
{{ config(materialized='view') }}
select
    release,
    layer,
    model,
    hook,
    architecture,
    d_in,
    d_sae,
    k,
    source_format
from {{ ref('stg_lake__saes') }}
