-- The fate of every source cluster a >= 0 at l, per link and layer pair l -> l'
-- (clusters with no flow at all are included: they vanish, leak = 1, h_cond NULL).
-- Joins and groups on pair_id, the layer pair's key (int_link_pairs).
--   M_ab = N_ab / s_a over destination clusters b >= 0; purity = max_b M_ab (0 without flow)
--   survive = purity >= var(survive_threshold)                      (0.5)
--   split   = at least two b with M_ab >= var(split_threshold)       (0.2)
--   vanish  = purity < var(split_threshold)                          (0.2)
--   leak = 1 - sum_b N_ab / s_a = leak_noise + leak_undescribed + leak_unmatched, where
--     leak_noise       = flow to -1 / s_a (transport: mass into the unclustered bucket),
--     leak_undescribed = flow to -2 / s_a (0 for transport),
--     leak_unmatched   = members without a match / s_a (0 for transport).
--   h_cond = -sum_b T_ab ln T_ab, T_ab = N_ab / sum_b N_ab (nats; NULL without flow)
--   h_aug  = -sum_b M_ab ln M_ab - leak ln leak          (nats; 0 ln 0 = 0)
with pairs as (
    select * from {{ ref('int_link_pairs') }}
),

sources as (
    select
        p.pair_id, p.link_kind,
        s.cluster as src_cluster,
        s.size
    from pairs as p
    inner join {{ ref('int_cluster_sizes') }} as s
        on s.release = p.release
        and s.cluster_space = p.cluster_space
        and s.layer = p.src_layer
),

flows as (
    select
        f.pair_id,
        f.src_cluster,
        f.dst_cluster,
        f.flow,
        f.flow / s.size as m,
        sum(case when f.dst_cluster >= 0 then f.flow else 0 end) over (
            partition by f.pair_id, f.src_cluster
        ) as row_flow
    from {{ ref('int_cluster_flows') }} as f
    inner join sources as s
        on s.pair_id = f.pair_id
        and s.src_cluster = f.src_cluster
),

per_source as (
    select
        pair_id, src_cluster,
        max(case when dst_cluster >= 0 then m end) as max_m,
        sum(case when dst_cluster >= 0 and m >= {{ var('split_threshold') }} then 1 else 0 end) as n_split_targets,
        sum(case when dst_cluster >= 0 then flow else 0 end) as flow_to_clusters,
        sum(flow) as flow_all,
        sum(case when dst_cluster = -1 then flow else 0 end) as flow_noise,
        sum(case when dst_cluster = -2 then flow else 0 end) as flow_undescribed,
        sum(case when dst_cluster >= 0 then {{ xlogx('m') }} else 0 end) as sum_m_ln_m,
        sum(case when dst_cluster >= 0 and row_flow > 0 then {{ xlogx('flow / row_flow') }} else 0 end) as sum_t_ln_t
    from flows
    group by pair_id, src_cluster
),

fates as (
    select
        s.pair_id,
        s.link_kind,
        s.src_cluster,
        s.size,
        coalesce(f.max_m, 0) as purity,
        coalesce(f.n_split_targets, 0) as n_split_targets,
        coalesce(f.flow_to_clusters, 0) as flow_to_clusters,
        coalesce(f.flow_all, 0) as flow_all,
        coalesce(f.flow_noise, 0) as flow_noise,
        coalesce(f.flow_undescribed, 0) as flow_undescribed,
        coalesce(f.sum_m_ln_m, 0) as sum_m_ln_m,
        f.sum_t_ln_t
    from sources as s
    left join per_source as f
        on f.pair_id = s.pair_id
        and f.src_cluster = s.src_cluster
)

select
    p.release,
    p.cluster_space,
    p.link,
    p.src_layer,
    f.src_cluster,
    p.dst_layer,
    f.size,
    f.purity >= {{ var('survive_threshold') }} as survive,
    f.n_split_targets >= 2 as split,
    f.purity < {{ var('split_threshold') }} as vanish,
    f.purity,
    (f.size - f.flow_to_clusters) / f.size as leak,
    f.flow_noise / f.size as leak_noise,
    case when f.link_kind = 'match' then f.flow_undescribed / f.size else 0.0 end as leak_undescribed,
    case when f.link_kind = 'match' then (f.size - f.flow_all) / f.size else 0.0 end as leak_unmatched,
    case when f.flow_to_clusters > 0 then 0.0 - f.sum_t_ln_t end as h_cond,
    0.0 - (f.sum_m_ln_m + {{ xlogx('(f.size - f.flow_to_clusters) / f.size') }}) as h_aug,
    f.pair_id
from fates as f
inner join pairs as p
    on p.pair_id = f.pair_id
