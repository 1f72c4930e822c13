-- One row per feature of an ingested SAE.
--   description: the feature's description (NULL if none);
--   decoder_cluster / text_cluster: its cluster label in that space (-1 noise, -2 no vector,
--     NULL if the layer is not clustered in that space);
--   frac_active = n_f / N; mean_act (over the tokens where active), max_act;
--   is_dead = (n_f = 0). frac_active, n_active and is_dead are NULL where the layer has no
--   activation set; mean_act/max_act are NULL for features never active.
with activity as (
    select * from {{ ref('int_feature_activity') }}
),

clusters as (
    select release, layer, cluster_space, feature, cluster from {{ ref('stg_lake__clusters') }}
)

select
    f.release,
    f.layer,
    f.feature,
    d.description,
    cd.cluster as decoder_cluster,
    ct.cluster as text_cluster,
    case when t.n_tokens > 0 then {{ as_double('coalesce(a.n_active, 0)') }} / t.n_tokens end as frac_active,
    a.mean_act,
    a.max_act,
    f.dec_norm,
    case when t.n_tokens is not null then coalesce(a.n_active, 0) end as n_active,
    case when t.n_tokens is not null then coalesce(a.n_active, 0) = 0 end as is_dead
from {{ ref('int_features') }} as f
left join {{ ref('stg_lake__descriptions') }} as d
    on d.release = f.release and d.layer = f.layer and d.feature = f.feature
left join clusters as cd
    on cd.release = f.release and cd.layer = f.layer and cd.feature = f.feature and cd.cluster_space = 'decoder'
left join clusters as ct
    on ct.release = f.release and ct.layer = f.layer and ct.feature = f.feature and ct.cluster_space = 'text'
left join {{ ref('int_layer_tokens') }} as t
    on t.release = f.release and t.layer = f.layer
left join activity as a
    on a.release = f.release and a.layer = f.layer and a.feature = f.feature
