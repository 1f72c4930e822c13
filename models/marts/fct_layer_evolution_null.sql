-- The null model's distribution per release, cluster space, link space and layer pair: the
-- rates of every null draw present (fct_layer_evolution rows whose link is a null draw,
-- dim_links.is_null: match/<space>/random is draw 0, match/<space>/random.<i> draw i),
-- summarised over the draws:
--   null_<rate>    = mean over the draws (of the non-NULL values);
--   null_<rate>_sd = sample standard deviation over the draws (NULL with fewer than two).
-- null_link names the null family by its draw 0, match/<space>/random.
with draws as (
    select * from {{ ref('fct_layer_evolution') }}
    where is_null
),

summary as (
    select
        release,
        cluster_space,
        link_space,
        src_layer,
        dst_layer,
        count(*) as n_null_draws,
        max(n_src_clusters) as n_src_clusters,
        max(n_dst_clusters) as n_dst_clusters
        {%- for r in evolution_rates() %},
        avg({{ r }}) as null_{{ r }},
        stddev_samp({{ r }}) as null_{{ r }}_sd
        {%- endfor %}
    from draws
    group by release, cluster_space, link_space, src_layer, dst_layer
)

select
    release,
    cluster_space,
    link_space,
    {{ link_name("'match'", 'link_space', "'" ~ var('null_method') ~ "'") }} as null_link,
    src_layer,
    dst_layer,
    n_null_draws,
    n_src_clusters,
    n_dst_clusters
    {%- for r in evolution_rates() %},
    null_{{ r }},
    null_{{ r }}_sd
    {%- endfor %}
from summary
