-- Rates per link and layer pair l -> l'.
--   survive/split/vanish rates, mean_leak, h_cond_mean (non-NULL h_cond only), h_aug_mean:
--     averages over the source clusters a >= 0 at l (fct_cluster_fates);
--   merge_rate: share of ALL destination clusters b >= 0 at l' with at least two a having
--     M_ab >= var(merge_threshold); birth_rate: share with max_a N_ab / s'_b < var(birth_threshold)
--     (a cluster receiving no flow is a birth);
--   mi_cond = sum_ab P_ab ln(P_ab / (P_a P_b)), P_ab = N_ab / sum N over a >= 0, b >= 0;
--   mi_aug: the same over the joint Q with the leak column, weights s_a:
--     Q_ab = s_a M_ab / S = N_ab / S, Q_a,leak = s_a leak_a / S, S = sum_a s_a. Nats; 0 ln 0 = 0.
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
        release, cluster_space, link, src_layer, dst_layer,
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
    group by release, cluster_space, link, src_layer, dst_layer
),

dst_clusters as (
    select p.release, p.cluster_space, p.link, p.src_layer, p.dst_layer, d.cluster as dst_cluster
    from pairs as p
    inner join {{ ref('int_cluster_sizes') }} as d
        on d.release = p.release
        and d.cluster_space = p.cluster_space
        and d.layer = p.dst_layer
),

per_dst as (
    select
        d.release, d.cluster_space, d.link, d.src_layer, d.dst_layer, d.dst_cluster,
        sum(case when t.share_of_src >= {{ var('merge_threshold') }} then 1 else 0 end) as n_merge_sources,
        coalesce(max(t.share_of_dst), 0) as max_share_of_dst
    from dst_clusters as d
    left join transitions as t
        on t.release = d.release
        and t.cluster_space = d.cluster_space
        and t.link = d.link
        and t.src_layer = d.src_layer
        and t.dst_layer = d.dst_layer
        and t.dst_cluster = d.dst_cluster
    group by d.release, d.cluster_space, d.link, d.src_layer, d.dst_layer, d.dst_cluster
),

dst_rates as (
    select
        release, cluster_space, link, src_layer, dst_layer,
        count(*) as n_dst_clusters,
        avg(case when n_merge_sources >= 2 then 1.0 else 0.0 end) as merge_rate,
        avg(case when max_share_of_dst < {{ var('birth_threshold') }} then 1.0 else 0.0 end) as birth_rate
    from per_dst
    group by release, cluster_space, link, src_layer, dst_layer
),

cond_cells as (
    select
        release, cluster_space, link, src_layer, dst_layer,
        flow as n,
        sum(flow) over (partition by release, cluster_space, link, src_layer, dst_layer) as total,
        sum(flow) over (partition by release, cluster_space, link, src_layer, dst_layer, src_cluster) as row_sum,
        sum(flow) over (partition by release, cluster_space, link, src_layer, dst_layer, dst_cluster) as col_sum
    from transitions
    where flow > 0
),

mi_cond as (
    select
        release, cluster_space, link, src_layer, dst_layer,
        sum((n / total) * ln((n * total) / (row_sum * col_sum))) as mi_cond
    from cond_cells
    group by release, cluster_space, link, src_layer, dst_layer
),

aug_cells as (
    -- q: numerator of Q (divide by S); col: the destination cluster, or NULL for the leak column
    select
        t.release, t.cluster_space, t.link, t.src_layer, t.dst_layer, t.src_cluster,
        0 as is_leak, t.dst_cluster as col, t.flow as q
    from transitions as t
    where t.flow > 0
    union all
    select
        f.release, f.cluster_space, f.link, f.src_layer, f.dst_layer, f.src_cluster,
        1 as is_leak, -1 as col, f.size * f.leak as q
    from fates as f
    where f.size * f.leak > 0
),

aug as (
    select
        c.release, c.cluster_space, c.link, c.src_layer, c.dst_layer,
        c.q,
        f.size as row_sum,
        r.total_src_size as total,
        sum(c.q) over (
            partition by c.release, c.cluster_space, c.link, c.src_layer, c.dst_layer, c.is_leak, c.col
        ) as col_sum
    from aug_cells as c
    inner join fates as f
        on f.release = c.release
        and f.cluster_space = c.cluster_space
        and f.link = c.link
        and f.src_layer = c.src_layer
        and f.dst_layer = c.dst_layer
        and f.src_cluster = c.src_cluster
    inner join src_rates as r
        on r.release = c.release
        and r.cluster_space = c.cluster_space
        and r.link = c.link
        and r.src_layer = c.src_layer
        and r.dst_layer = c.dst_layer
),

mi_aug as (
    select
        release, cluster_space, link, src_layer, dst_layer,
        sum((q / total) * ln((q * total) / (row_sum * col_sum))) as mi_aug
    from aug
    group by release, cluster_space, link, src_layer, dst_layer
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
    case when s.n_src_clusters > 0 then coalesce(ma.mi_aug, 0.0) end as mi_aug
from pairs as p
left join src_rates as s
    on s.release = p.release and s.cluster_space = p.cluster_space and s.link = p.link
    and s.src_layer = p.src_layer and s.dst_layer = p.dst_layer
left join dst_rates as d
    on d.release = p.release and d.cluster_space = p.cluster_space and d.link = p.link
    and d.src_layer = p.src_layer and d.dst_layer = p.dst_layer
left join mi_cond as mc
    on mc.release = p.release and mc.cluster_space = p.cluster_space and mc.link = p.link
    and mc.src_layer = p.src_layer and mc.dst_layer = p.dst_layer
left join mi_aug as ma
    on ma.release = p.release and ma.cluster_space = p.cluster_space and ma.link = p.link
    and ma.src_layer = p.src_layer and ma.dst_layer = p.dst_layer
