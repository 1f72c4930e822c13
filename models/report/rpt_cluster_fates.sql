-- The fates table: every source cluster of every link that is not a null draw (fct_cluster_fates),
-- with the link's parts, its rank by size within the layer pair (size_rank 1 = largest; ties:
-- the smaller id), its fate as words and a label: the description of its most confident member
-- (highest HDBSCAN probability; ties: the smaller feature).
--   fate: 'survive, split' | 'survive' | 'split' | 'vanish' | 'partial' (none of the three).
with fates as (
    select
        f.*,
        row_number() over (partition by f.pair_id order by f.size desc, f.src_cluster) as size_rank
    from {{ ref('fct_cluster_fates') }} as f
),

labelled as (
    select
        c.release, c.cluster_space, c.layer, c.cluster, d.description,
        row_number() over (
            partition by c.release, c.cluster_space, c.layer, c.cluster
            order by coalesce(c.probability, 0) desc, c.feature
        ) as k
    from {{ ref('stg_lake__clusters') }} as c
    inner join {{ ref('stg_lake__descriptions') }} as d
        on d.release = c.release and d.layer = c.layer and d.feature = c.feature
    where c.cluster >= 0 and d.description is not null
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
    f.src_cluster,
    f.size,
    f.size_rank,
    case
        when f.survive and f.split then 'survive, split'
        when f.survive then 'survive'
        when f.split then 'split'
        when f.vanish then 'vanish'
        else 'partial'
    end as fate,
    f.purity,
    f.leak,
    f.h_cond,
    l.description as label
from fates as f
inner join {{ ref('int_link_pairs') }} as p
    on p.pair_id = f.pair_id
left join labelled as l
    on l.release = p.release
    and l.cluster_space = p.cluster_space
    and l.layer = p.src_layer
    and l.cluster = f.src_cluster
    and l.k = 1
where not p.is_null
