-- How many features (over all layers) have each persistence, per lineage link
-- (fct_feature_persistence: consecutive steps with cosine >= var(persistence_cosine)).
select
    p.release,
    p.link,
    l.link_kind,
    l.link_space,
    l.link_method,
    l.is_null,
    p.persistence,
    count(*) as n_features
from {{ ref('fct_feature_persistence') }} as p
inner join {{ ref('dim_links') }} as l
    on l.release = p.release and l.link = p.link
where p.persistence is not null
group by p.release, p.link, l.link_kind, l.link_space, l.link_method, l.is_null, p.persistence
