select
    release,
    layer,
    space as cluster_space,
    feature,
    cluster,
    probability,
    x,
    y
from {{ source('lake', 'clusters') }}
