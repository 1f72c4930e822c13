select
    release,
    layer,
    feature,
    description,
    explainer,
    source
from {{ source('lake', 'descriptions') }}
