-- Transport plans: the mass into a destination cluster (destination units) stays within its
-- size, up to 1e-3 relative (entropic plans meet their marginals only approximately).
-- A warning, not an error: an approximate plan is still usable.
{{ config(severity='warn') }}
select f.release, f.cluster_space, f.link, f.dst_layer, f.dst_cluster,
    sum(f.dst_flow) as total, max(s.size) as size
from {{ ref('int_cluster_flows') }} as f
inner join {{ ref('int_cluster_sizes') }} as s
    on s.release = f.release and s.cluster_space = f.cluster_space
    and s.layer = f.dst_layer and s.cluster = f.dst_cluster
where f.link_kind = 'transport'
group by f.release, f.cluster_space, f.link, f.dst_layer, f.dst_cluster
having sum(f.dst_flow) > max(s.size) * (1 + 1e-3)
