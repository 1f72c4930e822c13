-- The layer pairs (l -> l') of every link and cluster space: the (src_layer, dst_layer) pairs
-- the link holds data for, kept only when both layers are clustered in the cluster space.
-- pair_id (macro surrogate_id) is the one key of a (release, cluster_space, link, src_layer,
-- dst_layer): the flow, fate and evolution models join and group on it.
-- n_src_features / n_dst_features are n_l and n_l' (d_sae), NULL if the SAE is not ingested.
with layer_pairs as (
    select distinct 'match' as link_kind, release, link_space, link_method, src_layer, dst_layer
    from {{ ref('stg_lake__matches') }}
    union all
    select distinct 'transport' as link_kind, release, link_space, link_method, src_layer, dst_layer
    from {{ ref('stg_lake__transport') }}
),

clustered as (
    select distinct release, cluster_space, layer
    from {{ ref('stg_lake__clusters') }}
),

pairs as (
    select
        l.release,
        l.cluster_space,
        l.link,
        l.link_kind,
        l.link_space,
        l.link_method,
        l.is_null,
        l.null_draw,
        p.src_layer,
        p.dst_layer
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
)

select
    {{ surrogate_id(['p.release', 'p.cluster_space', 'p.link', 'p.src_layer', 'p.dst_layer']) }} as pair_id,
    p.release,
    p.cluster_space,
    p.link,
    p.link_kind,
    p.link_space,
    p.link_method,
    p.is_null,
    p.null_draw,
    p.src_layer,
    p.dst_layer,
    ws.n_features as n_src_features,
    wd.n_features as n_dst_features
from pairs as p
left join {{ ref('int_layer_widths') }} as ws
    on ws.release = p.release and ws.layer = p.src_layer
left join {{ ref('int_layer_widths') }} as wd
    on wd.release = p.release and wd.layer = p.dst_layer
