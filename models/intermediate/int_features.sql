-- The features of every ingested SAE: one row per (release, layer, feature), with its decoder norm.
select
    release,
    layer,
    feature,
    dec_norm
from {{ ref('stg_lake__features') }}
