select
    release,
    layer,
    space,
    n_clusters,
    noise_frac,
    coherence,
    silhouette,
    params
from {{ source('lake', 'cluster_quality') }}
