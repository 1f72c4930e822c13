-- n_f, mean and max activation of every feature active (value > 0) on at least one token,
-- per release and layer. Features never active have no row (they are dead where the layer
-- has an activation set).
select
    release,
    layer,
    feature,
    count(*) as n_active,
    avg({{ as_double('value') }}) as mean_act,
    max(value) as max_act
from {{ ref('stg_lake__activations') }}
where value > 0
group by release, layer, feature
