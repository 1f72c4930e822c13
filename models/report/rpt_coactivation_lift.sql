-- Co-activation within clusters per release, cluster space and layer: the quartiles over the
-- clusters of fct_cluster_coactivation (those with at least var(min_cluster_members) live
-- members) of the Jaccard lift and the NPMI delta (continuous percentiles); clusters whose lift
-- is NULL (a zero background) are left out.
select
    release,
    space,
    layer,
    count(*) as n_clusters,
    percentile_cont(0.25) within group (order by jaccard_lift) as jaccard_lift_p25,
    percentile_cont(0.5) within group (order by jaccard_lift) as jaccard_lift_p50,
    percentile_cont(0.75) within group (order by jaccard_lift) as jaccard_lift_p75,
    percentile_cont(0.25) within group (order by npmi_delta) as npmi_delta_p25,
    percentile_cont(0.5) within group (order by npmi_delta) as npmi_delta_p50,
    percentile_cont(0.75) within group (order by npmi_delta) as npmi_delta_p75
from {{ ref('fct_cluster_coactivation') }}
where jaccard_lift is not null and npmi_delta is not null
group by release, space, layer
