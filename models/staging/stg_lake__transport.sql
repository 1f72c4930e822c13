select
    release,
    space,
    solver,
    src_layer,
    src_cluster,
    dst_layer,
    dst_cluster,
    mass,
    cost
from {{ source('lake', 'transport') }}
