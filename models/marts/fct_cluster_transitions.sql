-- Flows N_ab > 0 from clusters a >= 0 at l to clusters b >= 0 at l', per link.
--   share_of_src = N_ab / s_a  (= M_ab);
--   share_of_dst = N_ab / s'_b, with N_ab in destination units (mass * n_l' / n_l for
--                  transport links when the widths differ).
-- pair_id: the layer pair's key (int_link_pairs).
with flows as (
    select * from {{ ref('int_cluster_flows') }}
    where dst_cluster >= 0 and flow > 0
),

sizes as (
    select * from {{ ref('int_cluster_sizes') }}
)

select
    f.release,
    f.cluster_space,
    f.link,
    f.src_layer,
    f.src_cluster,
    f.dst_layer,
    f.dst_cluster,
    f.flow,
    f.flow / s.size as share_of_src,
    f.dst_flow / d.size as share_of_dst,
    f.pair_id
from flows as f
inner join sizes as s
    on s.release = f.release
    and s.cluster_space = f.cluster_space
    and s.layer = f.src_layer
    and s.cluster = f.src_cluster
inner join sizes as d
    on d.release = f.release
    and d.cluster_space = f.cluster_space
    and d.layer = f.dst_layer
    and d.cluster = f.dst_cluster
