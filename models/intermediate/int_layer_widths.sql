-- n_l: the number of features at a layer (the SAE's d_sae).
select
    release,
    layer,
    d_sae as n_features
from {{ ref('stg_lake__saes') }}
