select
    release,
    graph,
    layer,
    feature,
    community,
    algorithm,
    modularity
from {{ source('lake', 'communities') }}
