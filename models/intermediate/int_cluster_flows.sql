-- N_ab for every link and layer pair (pair_id, int_link_pairs): the flow from the members of a
-- source cluster a >= 0 into each destination bucket b:
--   b >= 0  a cluster at l';
--   b = -1  noise (match links: the matched feature is labelled -1; transport: the
--           unclustered bucket, which also gathers -2 members);
--   b = -2  no vector (match links only: the matched feature is labelled -2, or has no
--           cluster row at l').
-- Source members labelled -1/-2 are not sources (they are not clusters): their flows are
-- left out everywhere. Members of a without a match have no row here (leak_unmatched).
-- flow is in source-feature units (1 per matched pair, or transported mass);
-- dst_flow is in destination-feature units: flow * n_l' / n_l for transport (when the
-- widths differ), flow for match links.
with pairs as (
    select * from {{ ref('int_link_pairs') }}
),

clusters as (
    select release, cluster_space, layer, feature, cluster
    from {{ ref('stg_lake__clusters') }}
),

match_flows as (
    select
        p.pair_id,
        s.cluster as src_cluster,
        case
            when d.cluster >= 0 then d.cluster
            when d.cluster = -1 then -1
            else -2
        end as dst_cluster,
        {{ as_double('count(*)') }} as flow,
        1.0 as width_ratio
    from pairs as p
    inner join clusters as s
        on s.release = p.release
        and s.cluster_space = p.cluster_space
        and s.layer = p.src_layer
        and s.cluster >= 0
    inner join {{ ref('stg_lake__matches') }} as m
        on m.release = p.release
        and m.link_space = p.link_space
        and m.link_method = p.link_method
        and m.src_layer = p.src_layer
        and m.dst_layer = p.dst_layer
        and m.src_feature = s.feature
    left join clusters as d
        on d.release = p.release
        and d.cluster_space = p.cluster_space
        and d.layer = p.dst_layer
        and d.feature = m.dst_feature
    where p.link_kind = 'match'
    group by
        p.pair_id, s.cluster,
        case when d.cluster >= 0 then d.cluster when d.cluster = -1 then -1 else -2 end
),

transport_flows as (
    select
        p.pair_id,
        t.src_cluster,
        case when t.dst_cluster >= 0 then t.dst_cluster else -1 end as dst_cluster,
        sum(t.mass) as flow,
        max(case
            when p.n_src_features > 0 and p.n_dst_features > 0
                then {{ as_double('p.n_dst_features') }} / p.n_src_features
            else 1.0
        end) as width_ratio
    from pairs as p
    inner join {{ ref('stg_lake__transport') }} as t
        on t.release = p.release
        and t.link_space = p.link_space
        and t.link_method = p.link_method
        and t.src_layer = p.src_layer
        and t.dst_layer = p.dst_layer
    where p.link_kind = 'transport'
        and t.src_cluster >= 0
    group by
        p.pair_id, t.src_cluster,
        case when t.dst_cluster >= 0 then t.dst_cluster else -1 end
),

flows as (
    select * from match_flows
    union all
    select * from transport_flows
)

select
    f.pair_id,
    p.release,
    p.cluster_space,
    p.link,
    p.link_kind,
    p.src_layer,
    f.src_cluster,
    p.dst_layer,
    f.dst_cluster,
    f.flow,
    f.flow * f.width_ratio as dst_flow
from flows as f
inner join pairs as p
    on p.pair_id = f.pair_id
