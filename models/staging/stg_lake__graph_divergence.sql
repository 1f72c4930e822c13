select
    release,
    other_release,
    layer,
    n_nodes,
    n_edges,
    other_n_nodes,
    other_n_edges,
    npmi_threshold,
    min_count,
    js_divergence,
    js_random_baseline
from {{ source('lake', 'graph_divergence') }}
