-- The feature browser: each feature's top correlated features of the next layer
-- (fct_feature_flow: pearson, sufficiency = n_both / n_src, necessity = n_both / n_dst), at most
-- var(browse_top) per feature by pearson (ties by feature id); rank 1 first.
with ranked as (
    select
        *,
        row_number() over (
            partition by release, src_layer, src_feature order by pearson desc, dst_layer, dst_feature
        ) as rank
    from {{ ref('fct_feature_flow') }}
)

select
    r.release,
    r.src_layer as layer,
    r.src_feature as feature,
    r.rank,
    r.dst_layer,
    r.dst_feature,
    r.pearson,
    r.sufficiency,
    r.necessity,
    d.description as dst_description
from ranked as r
left join {{ ref('stg_lake__descriptions') }} as d
    on d.release = r.release and d.layer = r.dst_layer and d.feature = r.dst_feature
where r.rank <= {{ var('browse_top', 8) }}
order by r.release, r.src_layer, r.src_feature, r.rank
