-- The dbt vars the marts were built with (dbt_project.yml; `saew build --vars` overrides them),
-- one row, so that the report's captions show the values actually used.
select
    {{ as_double(var('survive_threshold')) }} as survive_threshold,
    {{ as_double(var('split_threshold')) }} as split_threshold,
    {{ as_double(var('merge_threshold')) }} as merge_threshold,
    {{ as_double(var('birth_threshold')) }} as birth_threshold,
    {{ as_double(var('pass_through_threshold')) }} as pass_through_threshold,
    {{ as_double(var('persistence_cosine')) }} as persistence_cosine,
    cast({{ var('min_cluster_members') }} as {{ dbt.type_int() }}) as min_cluster_members,
    {{ as_double(var('null_band_z')) }} as null_band_z,
    cast('{{ var("null_method") }}' as {{ dbt.type_string() }}) as null_method,
    cast('{{ var("identity_method") }}' as {{ dbt.type_string() }}) as identity_method,
    cast({{ var('sankey_top') }} as {{ dbt.type_int() }}) as sankey_top,
    cast({{ var('report_top_features') }} as {{ dbt.type_int() }}) as report_top_features
