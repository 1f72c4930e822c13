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

{#- beyond the null = the rate lies outside the null band mean +- var(null_band_z) * sd, i.e.
    |z| > null_band_z (strictly). With sd 0 the band is the single point `mean` (every draw gave
    that value): beyond = the rate differs from it. NULL (no claim) when the rate, the mean or the
    sd is NULL: with one draw the band is unknown. -#}
{% macro beyond_null(rate, mean, sd) -%}
  case
    when {{ rate }} is null or {{ mean }} is null or {{ sd }} is null then null
    when {{ sd }} > {{ null_sd_floor() }} then abs({{ rate }} - {{ mean }}) > {{ var('null_band_z') }} * {{ sd }}
    else abs({{ rate }} - {{ mean }}) > {{ null_sd_floor() }}
  end
{%- endmacro %}
