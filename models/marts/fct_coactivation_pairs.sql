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

pairs as (
    select
        c.release,
        c.layer,
        c.feature_a,
        c.feature_b,
        c.n_ab,
        a.n_active as n_a,
        b.n_active as n_b,
        t.n_tokens,
        {{ as_double('c.n_ab') }} / t.n_tokens as p_ab,
        {{ as_double('a.n_active') }} / t.n_tokens as p_a,
        {{ as_double('b.n_active') }} / t.n_tokens as p_b
    from {{ ref('stg_lake__coactivations') }} as c
    inner join activity as a
        on a.release = c.release and a.layer = c.layer and a.feature = c.feature_a
    inner join activity as b
        on b.release = c.release and b.layer = c.layer and b.feature = c.feature_b
    inner join tokens as t
        on t.release = c.release and t.layer = c.layer
    where c.n_ab > 0
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
