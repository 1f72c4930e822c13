-- The Sankey diagrams' flows: per link (null draws left out) and layer pair, the flows N_ab of
-- fct_cluster_transitions between the var(sankey_top) (12) largest clusters of each side, ranked
-- by total flow (ties: the smaller id), with the others lumped into one "other" node per side
-- (src_cluster / dst_cluster NULL). Flows are summed, so each layer pair's total is unchanged.
with t as (
    select pair_id, src_cluster, dst_cluster, flow
    from {{ ref('fct_cluster_transitions') }}
    where flow > 0
),

src_rank as (
    select
        pair_id, src_cluster,
        row_number() over (partition by pair_id order by sum(flow) desc, src_cluster) as k
    from t
    group by pair_id, src_cluster
),

dst_rank as (
    select
        pair_id, dst_cluster,
        row_number() over (partition by pair_id order by sum(flow) desc, dst_cluster) as k
    from t
    group by pair_id, dst_cluster
),

lumped as (
    select
        t.pair_id,
        case when s.k <= {{ var('sankey_top') }} then t.src_cluster end as src_cluster,
        case when d.k <= {{ var('sankey_top') }} then t.dst_cluster end as dst_cluster,
        t.flow
    from t
    inner join src_rank as s
        on s.pair_id = t.pair_id and s.src_cluster = t.src_cluster
    inner join dst_rank as d
        on d.pair_id = t.pair_id and d.dst_cluster = t.dst_cluster
),

nodes as (
    select pair_id, src_cluster, dst_cluster, sum(flow) as flow
    from lumped
    group by pair_id, src_cluster, dst_cluster
)

select
    p.release,
    p.cluster_space,
    p.link,
    p.link_kind,
    p.link_space,
    p.link_method,
    p.src_layer,
    p.dst_layer,
    n.src_cluster,
    n.dst_cluster,
    n.flow
from nodes as n
inner join {{ ref('int_link_pairs') }} as p
    on p.pair_id = n.pair_id
where not p.is_null
