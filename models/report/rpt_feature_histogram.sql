-- The feature browser: each feature's activation histogram over the tokens where it is active
-- (value > 0 in `activations`, every row under the (release, layer): shards and all), in
-- B = var(browse_hist_bins) equal-width bins from 0 to the feature's max_act (int_feature_activity,
-- the largest active value; the same number as dim_features.max_act):
--   bin = min(floor(B * value / max_act), B - 1)   (the max itself falls in the last bin)
--   lo  = max_act * bin / B,  hi = max_act * (bin + 1) / B   (bins [lo, hi), the last one closed)
--   n   = active tokens whose value falls in the bin.
-- Only bins with n > 0 have a row; the n of a feature sum to its n_active. Features never active
-- have no row.
{%- set bins = var('browse_hist_bins', 20) %}
with active as (
    select
        a.release,
        a.layer,
        a.feature,
        {{ as_double('a.value') }} as value,
        {{ as_double('f.max_act') }} as max_act
    from {{ ref('stg_lake__activations') }} as a
    inner join {{ ref('int_feature_activity') }} as f
        on f.release = a.release and f.layer = a.layer and f.feature = a.feature
    where a.value > 0
),

binned as (
    select
        release,
        layer,
        feature,
        max_act,
        least(cast(floor({{ bins }} * value / max_act) as {{ dbt.type_int() }}), {{ bins - 1 }}) as bin
    from active
)

select
    release,
    layer,
    feature,
    bin,
    max_act * bin / {{ bins }} as lo,
    max_act * (bin + 1) / {{ bins }} as hi,
    count(*) as n
from binned
group by release, layer, feature, max_act, bin
order by release, layer, feature, bin
