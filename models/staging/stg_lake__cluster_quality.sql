select
    release,
    layer,
    space as cluster_space,
    n_clusters,
    noise_frac,
    coherence,
    silhouette,
    params,
    stability_ari,
    silhouette_null,
    coherence_null,
    largest_share,
    has_structure
from {{ source('lake', 'cluster_quality') }}
