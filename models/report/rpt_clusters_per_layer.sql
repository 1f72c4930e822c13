-- Per release, cluster space and layer, from the cluster labels (so ingested clusters count too):
--   n_features        features with a label row;
--   n_clusters        distinct labels >= 0;  mean_cluster_size = members of clusters / n_clusters;
--   noise_share       features labelled -1 / n_features;
--   n_with_xy         features with 2-D coordinates (x, y not NULL; the UMAP plot needs them).
select
    release,
    cluster_space,
    layer,
    count(*) as n_features,
    count(distinct case when cluster >= 0 then cluster end) as n_clusters,
    {{ as_double('sum(case when cluster >= 0 then 1 else 0 end)') }}
        / nullif(count(distinct case when cluster >= 0 then cluster end), 0) as mean_cluster_size,
    avg(case when cluster = -1 then 1.0 else 0.0 end) as noise_share,
    sum(case when x is not null and y is not null then 1 else 0 end) as n_with_xy
from {{ ref('stg_lake__clusters') }}
group by release, cluster_space, layer
