-- Flows never exceed cluster sizes: out of a source cluster, sum_b N_ab <= s_a over every
-- destination bucket; into a destination cluster, the flow in destination units <= s'_b.
-- Match links are exact (one-to-one matches); transport plans are allowed a relative 1e-6
-- (and see assert_transport_flows_within_cluster_sizes for the destination side).
with flows as (
    select * from {{ ref('int_cluster_flows') }}
),

out_of_src as (
    select f.release, f.cluster_space, f.link, f.src_layer, f.src_cluster as cluster,
        'source' as side, sum(f.flow) as total, max(s.size) as size
    from flows as f
    inner join {{ ref('int_cluster_sizes') }} as s
        on s.release = f.release and s.cluster_space = f.cluster_space
        and s.layer = f.src_layer and s.cluster = f.src_cluster
    group by f.release, f.cluster_space, f.link, f.src_layer, f.src_cluster
),

into_dst as (
    select f.release, f.cluster_space, f.link, f.dst_layer, f.dst_cluster as cluster,
        'destination' as side, sum(f.dst_flow) as total, max(s.size) as size
    from flows as f
    inner join {{ ref('int_cluster_sizes') }} as s
        on s.release = f.release and s.cluster_space = f.cluster_space
        and s.layer = f.dst_layer and s.cluster = f.dst_cluster
    where f.link_kind = 'match'
    group by f.release, f.cluster_space, f.link, f.dst_layer, f.dst_cluster
)

select * from out_of_src where total > size * (1 + 1e-6)
union all
select * from into_dst where total > size * (1 + 1e-6)
