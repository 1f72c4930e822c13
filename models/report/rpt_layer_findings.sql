-- The findings per link (null draws left out) and layer pair: the rates that decide what a
-- layer pair shows, each next to its null (fct_layer_evolution_vs_null: mean, sample sd, z,
-- beyond = outside the band mean +- var(null_band_z) sd (macro null_band_half: with sd 0, two
-- clusters' worth), the band as null_<rate>_lo / _hi, clipped to the range the rate can take
-- (macros null_band_lo / null_band_hi: [0, 1] for the shares, >= 0 for the entropies and MI)),
-- whether the two layers' clusterings have structure (cluster_quality.has_structure; NULL when
-- unknown), and a verdict:
--   'no structure' when either layer's has_structure is false (its rates are not findings);
--   'no null'      else, when there are no null draws for the pair;
--   'beyond null'  else, when survive, split, merge, vanish or birth rate is beyond its null;
--   'within null'  otherwise (with a single draw nothing can be beyond: no band, no claim).
with v as (
    select * from {{ ref('fct_layer_evolution_vs_null') }}
),

quality as (
    select release, cluster_space, layer, has_structure
    from {{ ref('stg_lake__cluster_quality') }}
)

select
    v.release,
    v.cluster_space,
    v.link,
    v.link_kind,
    v.link_space,
    v.link_method,
    v.src_layer,
    v.dst_layer,
    e.n_src_clusters,
    qs.has_structure as src_has_structure,
    qd.has_structure as dst_has_structure,
    v.n_null_draws
    {%- for r in finding_rates() %},
    v.{{ r }},
    v.null_{{ r }},
    v.null_{{ r }}_sd,
    v.{{ r }}_z,
    v.{{ r }}_beyond_null,
    {{ null_band_lo(r, 'v.null_' ~ r, 'v.null_' ~ r ~ '_sd', 'v.n_src_clusters', 'v.n_dst_clusters') }} as null_{{ r }}_lo,
    {{ null_band_hi(r, 'v.null_' ~ r, 'v.null_' ~ r ~ '_sd', 'v.n_src_clusters', 'v.n_dst_clusters') }} as null_{{ r }}_hi
    {%- endfor %},
    case
        when qs.has_structure = false or qd.has_structure = false then 'no structure'
        when v.n_null_draws = 0 then 'no null'
        when {% for r in verdict_rates() %}coalesce(v.{{ r }}_beyond_null, false){% if not loop.last %} or {% endif %}{% endfor %}
            then 'beyond null'
        else 'within null'
    end as verdict
from v
inner join {{ ref('fct_layer_evolution') }} as e
    on e.pair_id = v.pair_id
left join quality as qs
    on qs.release = v.release and qs.cluster_space = v.cluster_space and qs.layer = v.src_layer
left join quality as qd
    on qd.release = v.release and qd.cluster_space = v.cluster_space and qd.layer = v.dst_layer
