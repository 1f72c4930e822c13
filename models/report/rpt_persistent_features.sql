-- The most persistent features per lineage link: the var(report_top_features) (25) features of
-- fct_feature_persistence with the longest persistence (ties: lower layer, then lower feature),
-- rank 1 first, with their descriptions.
with ranked as (
    select
        p.*,
        row_number() over (partition by p.release, p.link
                           order by p.persistence desc, p.layer, p.feature) as rank
    from {{ ref('fct_feature_persistence') }} as p
)

select
    r.release,
    r.link,
    l.link_kind,
    l.link_space,
    l.link_method,
    l.is_null,
    r.rank,
    r.layer,
    r.feature,
    r.persistence,
    r.chain_length,
    d.description
from ranked as r
inner join {{ ref('dim_links') }} as l
    on l.release = r.release and l.link = r.link
left join {{ ref('stg_lake__descriptions') }} as d
    on d.release = r.release and d.layer = r.layer and d.feature = r.feature
where r.rank <= {{ var('report_top_features') }}
