select
    release,
    layer,
    degree,
    n_nodes,
    n_nodes_random
from {{ source('lake', 'graph_degrees') }}
