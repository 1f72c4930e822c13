select
    release,
    layer,
    feature,
    n_active,
    degree,
    strength
from {{ source('lake', 'graph_nodes') }}
