-- Co-activation within clusters, per release, layer, cluster space and cluster a >= 0 with at
-- least var(min_cluster_members) (4) live members (n_f > 0; n_members counts them).
-- Scores are means over ALL m (m - 1) / 2 pairs of live members; a pair that never co-occurs
-- counts J = 0 and NPMI = -1, so without enumerating pairs:
--   jaccard = sum_{co-occurring member pairs} J / P
--   npmi    = (sum_{co-occurring member pairs} NPMI - (P - #co-occurring pairs)) / P
-- Background: the same means over all pairs of live features of the layer (the exact
-- expectation for a random set of live features).
--   jaccard_lift = jaccard / jaccard_background; npmi_delta = npmi - npmi_background.
with live as (
    select a.release, a.layer, a.feature
    from {{ ref('int_feature_activity') }} as a
    inner join {{ ref('int_layer_tokens') }} as t
        on t.release = a.release and t.layer = a.layer
    where a.n_active > 0
),

members as (
    select c.release, c.layer, c.cluster_space as space, c.cluster, c.feature
    from {{ ref('stg_lake__clusters') }} as c
    inner join live as l
        on l.release = c.release and l.layer = c.layer and l.feature = c.feature
    where c.cluster >= 0
),

cluster_sizes as (
    select release, layer, space, cluster, count(*) as n_members
    from members
    group by release, layer, space, cluster
    having count(*) >= {{ var('min_cluster_members') }}
),

pairs as (
    select * from {{ ref('fct_coactivation_pairs') }}
),

cluster_pairs as (
    select
        ma.release, ma.layer, ma.space, ma.cluster,
        count(*) as n_pairs,
        sum(p.jaccard) as sum_jaccard,
        sum(p.npmi) as sum_npmi
    from pairs as p
    inner join members as ma
        on ma.release = p.release and ma.layer = p.layer and ma.feature = p.feature_a
    inner join members as mb
        on mb.release = p.release and mb.layer = p.layer and mb.feature = p.feature_b
        and mb.space = ma.space and mb.cluster = ma.cluster
    group by ma.release, ma.layer, ma.space, ma.cluster
),

layer_live as (
    select release, layer, count(*) as n_live
    from live
    group by release, layer
),

layer_pairs as (
    select release, layer, count(*) as n_pairs, sum(jaccard) as sum_jaccard, sum(npmi) as sum_npmi
    from pairs
    group by release, layer
),

background as (
    select
        l.release,
        l.layer,
        {{ as_double('l.n_live') }} * (l.n_live - 1) / 2 as n_all_pairs,
        coalesce(p.n_pairs, 0) as n_pairs,
        coalesce(p.sum_jaccard, 0) as sum_jaccard,
        coalesce(p.sum_npmi, 0) as sum_npmi
    from layer_live as l
    left join layer_pairs as p
        on p.release = l.release and p.layer = l.layer
    where l.n_live >= 2
),

scores as (
    select
        s.release,
        s.layer,
        s.space,
        s.cluster,
        s.n_members,
        coalesce(cp.sum_jaccard, 0) / ({{ as_double('s.n_members') }} * (s.n_members - 1) / 2) as jaccard,
        (coalesce(cp.sum_npmi, 0) - ({{ as_double('s.n_members') }} * (s.n_members - 1) / 2 - coalesce(cp.n_pairs, 0)))
            / ({{ as_double('s.n_members') }} * (s.n_members - 1) / 2) as npmi,
        b.sum_jaccard / b.n_all_pairs as jaccard_background,
        (b.sum_npmi - (b.n_all_pairs - b.n_pairs)) / b.n_all_pairs as npmi_background
    from cluster_sizes as s
    left join cluster_pairs as cp
        on cp.release = s.release and cp.layer = s.layer and cp.space = s.space and cp.cluster = s.cluster
    inner join background as b
        on b.release = s.release and b.layer = s.layer
)

select
    release,
    layer,
    space,
    cluster,
    n_members,
    jaccard,
    npmi,
    jaccard_background,
    npmi_background,
    case when jaccard_background > 0 then jaccard / jaccard_background end as jaccard_lift,
    npmi - npmi_background as npmi_delta
from scores
