-- The layer pairs (l -> l') of every link and cluster space: the (src_layer, dst_layer) pairs
-- the link holds data for, kept only when both layers are clustered in the cluster space.
-- n_src_features / n_dst_features are n_l and n_l' (d_sae), NULL if the SAE is not ingested.
with match_pairs as (
    select distinct release, space as link_space, method as link_method, src_layer, dst_layer
    from {{ ref('stg_lake__matches') }}
),

transport_pairs as (
    select distinct release, space as link_space, solver as link_method, src_layer, dst_layer
    from {{ ref('stg_lake__transport') }}
),

layer_pairs as (
    select 'match' as link_kind, release, link_space, link_method, src_layer, dst_layer
    from match_pairs
    union all
    select 'transport' as link_kind, release, link_space, link_method, src_layer, dst_layer
    from transport_pairs
),

clustered as (
    select distinct release, space as cluster_space, layer
    from {{ ref('stg_lake__clusters') }}
)

select
    l.release,
    l.cluster_space,
    l.link,
    l.link_kind,
    l.link_space,
    l.link_method,
    p.src_layer,
    p.dst_layer,
    ws.n_features as n_src_features,
    wd.n_features as n_dst_features
from {{ ref('int_links') }} as l
inner join layer_pairs as p
    on p.link_kind = l.link_kind
    and p.release = l.release
    and p.link_space = l.link_space
    and p.link_method = l.link_method
inner join clustered as cs
    on cs.release = l.release and cs.cluster_space = l.cluster_space and cs.layer = p.src_layer
inner join clustered as cd
    on cd.release = l.release and cd.cluster_space = l.cluster_space and cd.layer = p.dst_layer
left join {{ ref('int_layer_widths') }} as ws
    on ws.release = l.release and ws.layer = p.src_layer
left join {{ ref('int_layer_widths') }} as wd
    on wd.release = l.release and wd.layer = p.dst_layer
