-- Quality of each layer's clustering per cluster space, as `saew cluster` stored it
-- (cluster_quality, contract section 6): the scores next to their shuffled-label nulls and
-- has_structure (some cluster beats its null). Columns the clustering step has not filled are NULL.
select
    release,
    cluster_space,
    layer,
    n_clusters,
    noise_frac,
    largest_share,
    coherence,
    coherence_null,
    silhouette,
    silhouette_null,
    stability_ari,
    has_structure
from {{ ref('stg_lake__cluster_quality') }}
