-- s_a: the number of features in each cluster a >= 0 of a layer and cluster space.
select
    release,
    cluster_space,
    layer,
    cluster,
    count(*) as size
from {{ ref('stg_lake__clusters') }}
where cluster >= 0
group by release, cluster_space, layer, cluster
