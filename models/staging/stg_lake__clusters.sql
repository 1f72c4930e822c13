select
    release,
    layer,
    space,
    feature,
    cluster,
    probability,
    x,
    y
from {{ source('lake', 'clusters') }}
