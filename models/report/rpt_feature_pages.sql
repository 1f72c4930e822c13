-- The feature browser (saew browse): one row per feature of an ingested SAE, everything its
-- page shows in one place: description and explainer, activation statistics (dim_features:
-- frac_active = n_f / N, mean_act over active tokens, max_act), the statistics imported from
-- elsewhere (feature_stats: Neuronpedia's max_act, frac_nonzero, top positive / negative logits;
-- NULL where none), and the activation fates (fct_feature_fates_activation: pass_through,
-- appearing, with the max pearson to the next / from the previous layer).
select
    f.release,
    f.layer,
    f.feature,
    f.description,
    d.explainer,
    f.frac_active,
    f.mean_act,
    f.max_act,
    f.n_active,
    f.is_dead,
    s.max_act as ext_max_act,
    s.frac_nonzero as ext_frac_nonzero,
    s.pos_str,
    s.pos_values,
    s.neg_str,
    s.neg_values,
    s.source as ext_source,
    a.pass_through,
    a.appearing,
    a.max_pearson_out,
    a.max_pearson_in
from {{ ref('dim_features') }} as f
left join {{ ref('stg_lake__descriptions') }} as d
    on d.release = f.release and d.layer = f.layer and d.feature = f.feature
left join {{ ref('stg_lake__feature_stats') }} as s
    on s.release = f.release and s.layer = f.layer and s.feature = f.feature
left join {{ ref('fct_feature_fates_activation') }} as a
    on a.release = f.release and a.layer = f.layer and a.feature = f.feature
order by f.release, f.layer, f.feature
