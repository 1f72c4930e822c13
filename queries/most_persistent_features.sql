-- The most persistent features: per match link, the features whose lineage keeps a step cosine
-- >= the persistence threshold (dbt var persistence_cosine, 0.7) for the most consecutive
-- layers (fct_feature_persistence), with the description of the root and of the last feature
-- of the persistent run.
-- Run: saew query queries/most_persistent_features.sql
with ranked as (
    select
        p.*,
        row_number() over (partition by p.release, p.link
                           order by p.persistence desc, p.layer, p.feature) as rank_in_link
    from fct_feature_persistence as p
    where p.persistence > 0
)

select
    r.release,
    r.link,
    r.rank_in_link,
    r.layer,
    r.feature,
    r.persistence,
    r.chain_length,
    root.description as description,
    last.layer as last_layer,
    last.feature as last_feature,
    last.description as last_description
from ranked as r
left join fct_feature_lineage as root
    on root.release = r.release and root.link = r.link and root.root_layer = r.layer
    and root.root_feature = r.feature and root.depth = 0
left join fct_feature_lineage as last
    on last.release = r.release and last.link = r.link and last.root_layer = r.layer
    and last.root_feature = r.feature and last.depth = r.persistence
where r.rank_in_link <= 20
order by r.release, r.link, r.rank_in_link
