-- N_ab for every link and layer pair: the flow from the members of a source cluster a >= 0
-- into each destination bucket b:
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
    select release, space, layer, feature, cluster
    from {{ ref('stg_lake__clusters') }}
),

match_flows as (
    select
        p.release,
        p.cluster_space,
        p.link,
        p.link_kind,
        p.src_layer,
        s.cluster as src_cluster,
        p.dst_layer,
        case
            when d.cluster >= 0 then d.cluster
            when d.cluster = -1 then -1
            else -2
        end as dst_cluster,
        {{ as_double('count(*)') }} as flow
    from pairs as p
    inner join clusters as s
        on s.release = p.release
        and s.space = p.cluster_space
        and s.layer = p.src_layer
        and s.cluster >= 0
    inner join {{ ref('stg_lake__matches') }} as m
        on m.release = p.release
        and m.space = p.link_space
        and m.method = p.link_method
        and m.src_layer = p.src_layer
        and m.dst_layer = p.dst_layer
        and m.src_feature = s.feature
    left join clusters as d
        on d.release = p.release
        and d.space = p.cluster_space
        and d.layer = p.dst_layer
        and d.feature = m.dst_feature
    where p.link_kind = 'match'
    group by
        p.release, p.cluster_space, p.link, p.link_kind, p.src_layer, s.cluster, p.dst_layer,
        case when d.cluster >= 0 then d.cluster when d.cluster = -1 then -1 else -2 end
),

transport_flows as (
    select
        p.release,
        p.cluster_space,
        p.link,
        p.link_kind,
        p.src_layer,
        t.src_cluster,
        p.dst_layer,
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
        and t.space = p.link_space
        and t.solver = p.link_method
        and t.src_layer = p.src_layer
        and t.dst_layer = p.dst_layer
    where p.link_kind = 'transport'
        and t.src_cluster >= 0
    group by
        p.release, p.cluster_space, p.link, p.link_kind, p.src_layer, t.src_cluster, p.dst_layer,
        case when t.dst_cluster >= 0 then t.dst_cluster else -1 end
)

select
    release, cluster_space, link, link_kind, src_layer, src_cluster, dst_layer, dst_cluster,
    flow,
    flow as dst_flow
from match_flows

union all

select
    release, cluster_space, link, link_kind, src_layer, src_cluster, dst_layer, dst_cluster,
    flow,
    flow * width_ratio as dst_flow
from transport_flows
