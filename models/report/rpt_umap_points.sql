-- The 2-D coordinates of every clustered feature that has them, with its cluster label
-- (-1 noise, -2 no vector), for the UMAP plots.
select
    release,
    cluster_space,
    layer,
    feature,
    cluster,
    x,
    y
from {{ ref('stg_lake__clusters') }}
where x is not null and y is not null
