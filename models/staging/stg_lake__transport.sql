select
    release,
    space as link_space,
    solver as link_method,
    src_layer,
    src_cluster,
    dst_layer,
    dst_cluster,
    mass,
    cost
from {{ source('lake', 'transport') }}
