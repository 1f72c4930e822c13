-- The evolution curves: per release, cluster space and layer pair, one series per link that is
-- not a null draw (its rates from fct_layer_evolution; band columns NULL), and one per null
-- family match/<space>/<null_method> (fct_layer_evolution_null: the mean over its draws, with
-- the null band <rate>_lo / <rate>_hi = mean -+ var(null_band_z) * sd (null_band_half), clipped to
-- the range the rate can take (null_band_lo / null_band_hi: [0, 1] for the shares, >= 0 for the
-- entropies and MI), NULL with one draw).
with links as (
    select
        release, cluster_space, link as series, link_kind, link_space, link_method,
        false as is_null, cast(null as {{ dbt.type_int() }}) as n_null_draws, src_layer, dst_layer
        {%- for r in evolution_rates() %},
        {{ r }},
        cast(null as {{ saew_double() }}) as {{ r }}_lo,
        cast(null as {{ saew_double() }}) as {{ r }}_hi
        {%- endfor %}
    from {{ ref('fct_layer_evolution') }}
    where not is_null
),

nulls as (
    select
        release, cluster_space, null_link as series, 'match' as link_kind, link_space,
        '{{ var("null_method") }}' as link_method, true as is_null,
        cast(n_null_draws as {{ dbt.type_int() }}) as n_null_draws, src_layer, dst_layer
        {%- for r in evolution_rates() %},
        null_{{ r }} as {{ r }},
        {{ null_band_lo(r, 'null_' ~ r, 'null_' ~ r ~ '_sd', 'n_src_clusters', 'n_dst_clusters') }} as {{ r }}_lo,
        {{ null_band_hi(r, 'null_' ~ r, 'null_' ~ r ~ '_sd', 'n_src_clusters', 'n_dst_clusters') }} as {{ r }}_hi
        {%- endfor %}
    from {{ ref('fct_layer_evolution_null') }}
)

select * from links
union all
select * from nulls
