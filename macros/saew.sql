{#- Portable helpers for the saew models. Only dbt's cross-database macros and plain SQL. -#}

{#- A 64-bit float type name: `double precision` is standard SQL (DuckDB, Postgres, Snowflake...). -#}
{% macro saew_double() -%}
  {{ return(adapter.dispatch('saew_double', 'saew')()) }}
{%- endmacro %}
{% macro default__saew_double() -%}double precision{%- endmacro %}
{% macro bigquery__saew_double() -%}float64{%- endmacro %}

{#- x as a 64-bit float (avoids integer division on engines that truncate). -#}
{% macro as_double(x) -%}cast({{ x }} as {{ saew_double() }}){%- endmacro %}

{#- x * ln(x), with the convention 0 ln 0 = 0 (and 0 for x <= 0, which only rounding can produce). -#}
{% macro xlogx(x) -%}(case when ({{ x }}) > 0 then ({{ x }}) * ln({{ x }}) else 0 end){%- endmacro %}

{#- The link name `<kind>/<space>/<method>`, e.g. match/decoder/folded or transport/text/emd
    (saew.storage.names.link_name). Arguments are SQL expressions: pass "'match'" for a literal. -#}
{% macro link_name(kind, space, method) -%}
  {{ dbt.concat([kind, "'/'", space, "'/'", method]) }}
{%- endmacro %}

{#- A small integer key per distinct combination of `columns` (dense_rank over them), so joins
    and groups compare one integer instead of several columns. Stable within one build only:
    link_id (dim_links) and pair_id (int_link_pairs) are made with it. -#}
{% macro surrogate_id(columns) -%}
  dense_rank() over (order by {{ columns | join(', ') }})
{%- endmacro %}

{#- How many match steps the lineage unrolls: the var `lineage_max_depth` if set, else the
    largest number of distinct source layers of any (release, space, method) in `matches`
    (the longest chain a link can hold), read from the data at run time. -#}
{% macro lineage_max_depth() -%}
  {%- set fixed = var('lineage_max_depth', none) -%}
  {%- if fixed is not none -%}
    {{ return(fixed | int) }}
  {%- endif -%}
  {%- if not execute -%}
    {{ return(0) }}
  {%- endif -%}
  {%- set sql -%}
    select coalesce(max(n_layers), 0) as depth
    from (
        select count(distinct src_layer) as n_layers
        from {{ source('lake', 'matches') }}
        group by release, space, method
    ) as per_link
  {%- endset -%}
  {%- set result = run_query(sql) -%}
  {{ return(result.columns[0].values()[0] | int) }}
{%- endmacro %}

{#- One bigint key for a (layer, feature) node: layer * 2^32 + feature. Lets the lineage joins
    compare one integer instead of several columns. -#}
{% macro node_key(layer, feature) -%}
  (cast({{ layer }} as {{ dbt.type_bigint() }}) * 4294967296 + {{ feature }})
{%- endmacro %}
