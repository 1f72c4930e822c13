{#- The null model of cluster evolution: seeded random matchings drawn several times (contract
    section 6). Method `random` is draw 0, `random.<i>` (i >= 1, no leading zero) draw i; the
    name comes from var('null_method'). Only dim_links calls null_draw: every other model reads
    dim_links.is_null / null_draw (carried by int_links and int_link_pairs). -#}

{#- The draw index of a match method: 0 for `<null_method>`, i for `<null_method>.<i>`, else NULL.
    Mirrors saew.storage.names.null_draw_index (a digit string without a leading zero). -#}
{% macro null_draw(method) -%}
  {%- set base = var('null_method') -%}
  {%- set n = base | length -%}
  case
    when {{ method }} = '{{ base }}' then 0
    when {{ method }} like '{{ base }}.%'
      and length({{ method }}) > {{ n + 1 }}
      and substring({{ method }}, {{ n + 2 }}, 1) <> '0'
      and ltrim(substring({{ method }}, {{ n + 2 }}), '0123456789') = ''
      then cast(substring({{ method }}, {{ n + 2 }}) as {{ dbt.type_int() }})
  end
{%- endmacro %}

{#- The rates of fct_layer_evolution that are compared with the null (one list for every model). -#}
{% macro evolution_rates() -%}
  {{ return(['survive_rate', 'split_rate', 'vanish_rate', 'merge_rate', 'birth_rate', 'mean_leak',
             'h_cond_mean', 'h_aug_mean', 'mi_cond', 'mi_aug']) }}
{%- endmacro %}

{#- The rates the findings (rpt_layer_findings) show next to their null. -#}
{% macro finding_rates() -%}
  {{ return(['survive_rate', 'split_rate', 'merge_rate', 'vanish_rate', 'birth_rate', 'mean_leak']) }}
{%- endmacro %}

{#- The rates whose departure from the null makes a layer pair's verdict 'beyond null'. -#}
{% macro verdict_rates() -%}
  {{ return(['survive_rate', 'split_rate', 'merge_rate', 'vanish_rate', 'birth_rate']) }}
{%- endmacro %}

{#- A spread below this counts as 0 (all draws equal up to rounding). -#}
{% macro null_sd_floor() -%}1e-12{%- endmacro %}

{#- z = (rate - null mean) / null sd; NULL when the sd is NULL (fewer than two draws with a value)
    or 0 (all draws equal: z is not finite). -#}
{% macro null_z(rate, mean, sd) -%}
  case when {{ sd }} > {{ null_sd_floor() }} then ({{ rate }} - {{ mean }}) / {{ sd }} end
{%- endmacro %}

{#- The resolution of a rate: one cluster's worth (1 / clusters) for the rates that count
    clusters (survive, split, vanish over the source clusters; merge, birth over the destination
    clusters), 0 for the others. -#}
{% macro rate_resolution(rate, n_src, n_dst) -%}
  {%- if rate in ['survive_rate', 'split_rate', 'vanish_rate'] -%}
    (1.0 / nullif({{ n_src }}, 0))
  {%- elif rate in ['merge_rate', 'birth_rate'] -%}
    (1.0 / nullif({{ n_dst }}, 0))
  {%- else -%}
    0.0
  {%- endif -%}
{%- endmacro %}

{#- Half-width of the null band: var(null_band_z) * sd. When every draw gave the same value
    (sd 0) the spread of the null is below what the draws can resolve, so the band is
    var(null_band_z) clusters' worth (rate_resolution) instead of a single point: a rate of
    1 of 38 clusters against a null of 0 of 38 in every draw is not a finding. NULL with one draw. -#}
{% macro null_band_half(rate, sd, n_src, n_dst) -%}
  case
    when {{ sd }} is null then null
    when {{ sd }} > {{ null_sd_floor() }} then {{ var('null_band_z') }} * {{ sd }}
    else {{ var('null_band_z') }} * coalesce({{ rate_resolution(rate, n_src, n_dst) }}, 0.0)
  end
{%- endmacro %}

{#- The range a rate can take: [0, 1] for the shares (survive, split, vanish, merge, birth
    rates and mean_leak), [0, no upper end) for the entropies and mutual informations (nats).
    Returns (lo, hi), hi none when unbounded. -#}
{% macro rate_bounds(rate) -%}
  {%- if rate in ['h_cond_mean', 'h_aug_mean', 'mi_cond', 'mi_aug'] -%}
    {{ return((0, none)) }}
  {%- else -%}
    {{ return((0, 1)) }}
  {%- endif -%}
{%- endmacro %}

{#- The printed null band's ends: lo = max(mean - null_band_half, rate_bounds lo),
    hi = min(mean + null_band_half, rate_bounds hi): a band of a share never shows below 0 or
    above 1 (a null of 0 in every draw -+ 2 clusters' worth of 22 is [0, 0.091], not
    [-0.091, 0.091]). NULL where the band is (one draw). beyond_null needs no clip: a rate
    inside its range lies outside the clipped band exactly when it lies outside the unclipped one. -#}
{% macro null_band_lo(rate, mean, sd, n_src, n_dst) -%}
  {%- set lo = rate_bounds(rate)[0] -%}
  {%- set edge = mean ~ ' - (' ~ null_band_half(rate, sd, n_src, n_dst) ~ ')' -%}
  (case when {{ edge }} < {{ lo }} then {{ as_double(lo) }} else {{ edge }} end)
{%- endmacro %}

{% macro null_band_hi(rate, mean, sd, n_src, n_dst) -%}
  {%- set hi = rate_bounds(rate)[1] -%}
  {%- set edge = mean ~ ' + (' ~ null_band_half(rate, sd, n_src, n_dst) ~ ')' -%}
  {%- if hi is none -%}
  ({{ edge }})
  {%- else -%}
  (case when {{ edge }} > {{ hi }} then {{ as_double(hi) }} else {{ edge }} end)
  {%- endif -%}
{%- endmacro %}

{#- beyond the null = the rate lies outside the null band mean +- half-width: with sd > 0 that is
    |z| > var(null_band_z) (strictly), as contract section 6 defines it; with sd 0 (all draws
    equal) |rate - mean| > null_band_half (one cluster's worth x null_band_z for counting rates,
    any difference for the others). NULL (no claim) when the rate, the mean or the sd is NULL:
    with one draw the band is unknown. -#}
{% macro beyond_null(rate_name, rate, mean, sd, n_src, n_dst) -%}
  case
    when {{ rate }} is null or {{ mean }} is null or {{ sd }} is null then null
    when {{ sd }} > {{ null_sd_floor() }} then abs({{ rate }} - {{ mean }}) > {{ var('null_band_z') }} * {{ sd }}
    else abs({{ rate }} - {{ mean }}) > greatest({{ null_band_half(rate_name, sd, n_src, n_dst) }}, {{ null_sd_floor() }})
  end
{%- endmacro %}
