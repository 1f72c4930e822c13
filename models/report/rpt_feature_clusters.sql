-- The feature browser: each feature's cluster in every clustering space (ours and external ones
-- such as `neuronpedia`), the cluster's size, and a few cluster-mates: the members of the same
-- cluster with the highest membership probability (ties by feature id), the feature itself left
-- out, at most var(browse_mates) of them. Noise (-1) and no-vector (-2) labels have no mates.
with clusters as (
    select release, layer, cluster_space, feature, cluster, probability
    from {{ ref('stg_lake__clusters') }}
),

sizes as (
    select release, layer, cluster_space, cluster, count(*) as n_members
    from clusters
    where cluster >= 0
    group by release, layer, cluster_space, cluster
),

ranked as (
    select
        *,
        row_number() over (
            partition by release, layer, cluster_space, cluster
            order by probability desc nulls last, feature
        ) as member_rank
    from clusters
    where cluster >= 0
),

mates as (
    select
        c.release,
        c.layer,
        c.cluster_space,
        c.feature,
        r.feature as mate,
        row_number() over (
            partition by c.release, c.layer, c.cluster_space, c.feature order by r.member_rank
        ) as mate_rank
    from clusters as c
    inner join ranked as r
        on r.release = c.release and r.layer = c.layer and r.cluster_space = c.cluster_space
        and r.cluster = c.cluster and r.member_rank <= {{ var('browse_mates', 5) }} + 1
        and r.feature <> c.feature
),

mate_lists as (
    select release, layer, cluster_space, feature, list(mate order by mate_rank) as mates
    from mates
    where mate_rank <= {{ var('browse_mates', 5) }}
    group by release, layer, cluster_space, feature
)

select
    c.release,
    c.layer,
    c.feature,
    c.cluster_space,
    c.cluster,
    c.probability,
    s.n_members,
    m.mates
from clusters as c
left join sizes as s
    on s.release = c.release and s.layer = c.layer and s.cluster_space = c.cluster_space and s.cluster = c.cluster
left join mate_lists as m
    on m.release = c.release and m.layer = c.layer and m.cluster_space = c.cluster_space and m.feature = c.feature
order by c.release, c.layer, c.feature, c.cluster_space
