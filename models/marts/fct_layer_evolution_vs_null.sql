-- Each link's layer-pair rates next to its null model's (fct_layer_evolution_null): the null
-- draws match/<space>/random, match/<space>/random.1, ... of the same release, cluster space
-- and layer pair, where <space> is the link's own space (for transport/<space>/<solver>, the
-- random matches in that space). For every rate:
--   null_<rate>            mean over the draws;       null_<rate>_sd  their sample sd;
--   <rate>_z               (rate - null mean) / null sd, NULL when the sd is NULL or 0;
--   <rate>_beyond_null     the rate lies outside the null band mean +- var(null_band_z) sd
--                          (|z| > 2); with sd 0 (all draws equal) the band is 2 clusters'
--                          worth for the counting rates (macro null_band_half);
--                          NULL with one draw (no band: no claim either way) or no null.
-- null_* columns are NULL and n_null_draws is 0 when the release has no null draws in that
-- space. The null draws' own links are left out (they are the nulls).
with evo as (
    select * from {{ ref('fct_layer_evolution') }}
    where not is_null
),

null_model as (
    select * from {{ ref('fct_layer_evolution_null') }}
)

select
    e.release,
    e.cluster_space,
    e.link,
    {{ link_name("'match'", 'e.link_space', "'" ~ var('null_method') ~ "'") }} as null_link,
    e.src_layer,
    e.dst_layer,
    {%- for r in evolution_rates() %}
    e.{{ r }},
    n.null_{{ r }},
    {%- endfor %}
    e.survive_rate - n.null_survive_rate as survive_rate_excess,
    e.mi_aug - n.null_mi_aug as mi_aug_excess,
    e.pair_id,
    e.link_kind,
    e.link_space,
    e.link_method,
    coalesce(n.n_null_draws, 0) as n_null_draws,
    e.n_src_clusters,
    e.n_dst_clusters
    {%- for r in evolution_rates() %},
    n.null_{{ r }}_sd,
    {{ null_z('e.' ~ r, 'n.null_' ~ r, 'n.null_' ~ r ~ '_sd') }} as {{ r }}_z,
    {{ beyond_null(r, 'e.' ~ r, 'n.null_' ~ r, 'n.null_' ~ r ~ '_sd', 'e.n_src_clusters', 'e.n_dst_clusters') }} as {{ r }}_beyond_null
    {%- endfor %}
from evo as e
left join null_model as n
    on n.release = e.release
    and n.cluster_space = e.cluster_space
    and n.link_space = e.link_space
    and n.src_layer = e.src_layer
    and n.dst_layer = e.dst_layer
