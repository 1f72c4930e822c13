-- Rates per link and layer pair l -> l'.
--   survive/split/vanish rates, mean_leak, h_cond_mean (non-NULL h_cond only), h_aug_mean:
--     averages over the source clusters a >= 0 at l (fct_cluster_fates);
--   merge_rate: share of ALL destination clusters b >= 0 at l' with at least two a having
--     M_ab >= var(merge_threshold); birth_rate: share with max_a N_ab / s'_b < var(birth_threshold)
--     (a cluster receiving no flow is a birth);
--   mi_cond = sum_ab P_ab ln(P_ab / (P_a P_b)), P_ab = N_ab / sum N over a >= 0, b >= 0;
--   mi_aug: the same over the joint Q with the leak column, weights s_a:
--     Q_ab = s_a M_ab / S = N_ab / S, Q_a,leak = s_a leak_a / S, S = sum_a s_a. Nats; 0 ln 0 = 0.
-- Joins and groups on pair_id, the layer pair's key (int_link_pairs); the link's kind, space,
-- method and null draw (dim_links) are carried as columns.
with pairs as (
    select * from {{ ref('int_link_pairs') }}
),

fates as (
    select * from {{ ref('fct_cluster_fates') }}
),

transitions as (
    select * from {{ ref('fct_cluster_transitions') }}
),

src_rates as (
    select
        pair_id,
        count(*) as n_src_clusters,
        avg({{ as_double('size') }}) as mean_src_cluster_size,
        sum(size) as total_src_size,
        avg(case when survive then 1.0 else 0.0 end) as survive_rate,
        avg(case when split then 1.0 else 0.0 end) as split_rate,
        avg(case when vanish then 1.0 else 0.0 end) as vanish_rate,
        avg(leak) as mean_leak,
        avg(h_cond) as h_cond_mean,
        avg(h_aug) as h_aug_mean
    from fates
    group by pair_id
),

dst_clusters as (
    select p.pair_id, d.cluster as dst_cluster
    from pairs as p
    inner join {{ ref('int_cluster_sizes') }} as d
        on d.release = p.release
        and d.cluster_space = p.cluster_space
        and d.layer = p.dst_layer
),

per_dst as (
    select
        d.pair_id, d.dst_cluster,
        sum(case when t.share_of_src >= {{ var('merge_threshold') }} then 1 else 0 end) as n_merge_sources,
        coalesce(max(t.share_of_dst), 0) as max_share_of_dst
    from dst_clusters as d
    left join transitions as t
        on t.pair_id = d.pair_id
        and t.dst_cluster = d.dst_cluster
    group by d.pair_id, d.dst_cluster
),

dst_rates as (
    select
        pair_id,
        count(*) as n_dst_clusters,
        avg(case when n_merge_sources >= 2 then 1.0 else 0.0 end) as merge_rate,
        avg(case when max_share_of_dst < {{ var('birth_threshold') }} then 1.0 else 0.0 end) as birth_rate
    from per_dst
    group by pair_id
),

cond_cells as (
    select
        pair_id,
        flow as n,
        sum(flow) over (partition by pair_id) as total,
        sum(flow) over (partition by pair_id, src_cluster) as row_sum,
        sum(flow) over (partition by pair_id, dst_cluster) as col_sum
    from transitions
    where flow > 0
),

mi_cond as (
    select
        pair_id,
        sum((n / total) * ln((n * total) / (row_sum * col_sum))) as mi_cond
    from cond_cells
    group by pair_id
),

aug_cells as (
    -- q: numerator of Q (divide by S); col: the destination cluster, or -1 for the leak column
    select t.pair_id, t.src_cluster, 0 as is_leak, t.dst_cluster as col, t.flow as q
    from transitions as t
    where t.flow > 0
    union all
    select f.pair_id, f.src_cluster, 1 as is_leak, -1 as col, f.size * f.leak as q
    from fates as f
    where f.size * f.leak > 0
),

aug as (
    select
        c.pair_id,
        c.q,
        f.size as row_sum,
        r.total_src_size as total,
        sum(c.q) over (partition by c.pair_id, c.is_leak, c.col) as col_sum
    from aug_cells as c
    inner join fates as f
        on f.pair_id = c.pair_id
        and f.src_cluster = c.src_cluster
    inner join src_rates as r
        on r.pair_id = c.pair_id
),

mi_aug as (
    select
        pair_id,
        sum((q / total) * ln((q * total) / (row_sum * col_sum))) as mi_aug
    from aug
    group by pair_id
)

select
    p.release,
    p.cluster_space,
    p.link,
    p.src_layer,
    p.dst_layer,
    coalesce(s.n_src_clusters, 0) as n_src_clusters,
    coalesce(d.n_dst_clusters, 0) as n_dst_clusters,
    s.mean_src_cluster_size,
    s.survive_rate,
    s.split_rate,
    s.vanish_rate,
    d.merge_rate,
    d.birth_rate,
    s.mean_leak,
    s.h_cond_mean,
    s.h_aug_mean,
    mc.mi_cond,
    case when s.n_src_clusters > 0 then coalesce(ma.mi_aug, 0.0) end as mi_aug,
    p.pair_id,
    p.link_kind,
    p.link_space,
    p.link_method,
    p.is_null,
    p.null_draw
from pairs as p
left join src_rates as s on s.pair_id = p.pair_id
left join dst_rates as d on d.pair_id = p.pair_id
left join mi_cond as mc on mc.pair_id = p.pair_id
left join mi_aug as ma on ma.pair_id = p.pair_id
