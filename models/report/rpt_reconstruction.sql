-- Explained variance of layer l' reconstructed through the matching from layer l (the
-- reconstruction table), per series <space>/<method>; is_baseline marks the null model's draws
-- (dim_links.is_null) and the identity baseline (feature i -> feature i, var identity_method).
select
    r.release,
    {{ dbt.concat(['r.link_space', "'/'", 'r.link_method']) }} as series,
    r.link_space,
    r.link_method,
    coalesce(l.is_null, false) or r.link_method = '{{ var("identity_method") }}' as is_baseline,
    r.src_layer,
    r.dst_layer,
    r.n_tokens,
    r.fvu,
    r.explained_variance
from {{ ref('stg_lake__reconstruction') }} as r
left join {{ ref('dim_links') }} as l
    on l.release = r.release
    and l.link_kind = 'match'
    and l.link_space = r.link_space
    and l.link_method = r.link_method
