-- Feature pairs (a < b) that co-occur on at least one token (n_ab > 0), per release and layer.
--   jaccard = n_ab / (n_a + n_b - n_ab)
--   npmi    = ln(p_ab / (p_a p_b)) / (-ln p_ab), p = n / N  (1 when p_ab = 1)
-- n_f counts tokens with activation > 0 (int_feature_activity), N from activation_sets;
-- dead features (n_f = 0) have no pairs. Layers without an activation set are left out.
with activity as (
    select * from {{ ref('int_feature_activity') }}
),

tokens as (
    select * from {{ ref('int_layer_tokens') }}
),

-- saew coactivation stores n_a and n_b with each pair (the same count of active tokens as
-- int_feature_activity), so the pairs are a projection; a row without them (null) takes them
-- from int_feature_activity by the joins (two joins of tens of millions of pairs cost ~6x the
-- projection).
coactivations as (
    select * from {{ ref('stg_lake__coactivations') }}
    where n_ab > 0
),

counted as (
    select
        c.release,
        c.layer,
        c.feature_a,
        c.feature_b,
        c.n_ab,
        c.n_a,
        c.n_b
    from coactivations as c
    where c.n_a is not null and c.n_b is not null
),

joined as (
    select
        c.release,
        c.layer,
        c.feature_a,
        c.feature_b,
        c.n_ab,
        a.n_active as n_a,
        b.n_active as n_b
    from coactivations as c
    inner join activity as a
        on a.release = c.release and a.layer = c.layer and a.feature = c.feature_a
    inner join activity as b
        on b.release = c.release and b.layer = c.layer and b.feature = c.feature_b
    where c.n_a is null or c.n_b is null
),

pairs as (
    select
        p.release,
        p.layer,
        p.feature_a,
        p.feature_b,
        p.n_ab,
        p.n_a,
        p.n_b,
        t.n_tokens,
        {{ as_double('p.n_ab') }} / t.n_tokens as p_ab,
        {{ as_double('p.n_a') }} / t.n_tokens as p_a,
        {{ as_double('p.n_b') }} / t.n_tokens as p_b
    from (
        select * from counted
        union all
        select * from joined
    ) as p
    inner join tokens as t
        on t.release = p.release and t.layer = p.layer
)

select
    release,
    layer,
    feature_a,
    feature_b,
    n_ab,
    n_a,
    n_b,
    {{ as_double('n_ab') }} / (n_a + n_b - n_ab) as jaccard,
    case
        when n_ab >= n_tokens then 1.0
        else ln(p_ab / (p_a * p_b)) / (-ln(p_ab))
    end as npmi
from pairs
