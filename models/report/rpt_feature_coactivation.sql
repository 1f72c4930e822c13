-- The feature browser: each feature's top co-activating features of its layer, by NPMI
-- (fct_coactivation_pairs, both orientations of each pair), at most var(browse_top) per feature
-- (ties by feature id); rank 1 first.
-- Each orientation keeps its own top var(browse_top) with a top-N aggregate (max_by over the key
-- (npmi, -other feature), no full sort of the tens of millions of pairs), then the at most
-- 2 x browse_top candidates of a feature are ranked.
{%- set top = var('browse_top', 8) %}

with tops as (
    select
        release, layer, feature_a as feature,
        max_by({'o': feature_b, 'n': npmi, 'j': jaccard, 'c': n_ab}, {'n': npmi, 'f': -feature_b}, {{ top }}) as top
    from {{ ref('fct_coactivation_pairs') }}
    group by release, layer, feature_a
    union all
    select
        release, layer, feature_b as feature,
        max_by({'o': feature_a, 'n': npmi, 'j': jaccard, 'c': n_ab}, {'n': npmi, 'f': -feature_a}, {{ top }}) as top
    from {{ ref('fct_coactivation_pairs') }}
    group by release, layer, feature_b
),

candidates as (
    select release, layer, feature, unnest(top) as t from tops
),

ranked as (
    select
        release,
        layer,
        feature,
        t.o as other_feature,
        t.n as npmi,
        t.j as jaccard,
        t.c as n_ab,
        row_number() over (partition by release, layer, feature order by t.n desc, t.o) as rank
    from candidates
)

select
    r.release,
    r.layer,
    r.feature,
    r.rank,
    r.other_feature,
    r.npmi,
    r.jaccard,
    r.n_ab,
    d.description as other_description
from ranked as r
left join {{ ref('stg_lake__descriptions') }} as d
    on d.release = r.release and d.layer = r.layer and d.feature = r.other_feature
where r.rank <= {{ top }}
order by r.release, r.layer, r.feature, r.rank
