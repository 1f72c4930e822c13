-- Persistence of a feature along a match link: the number of consecutive steps of its
-- lineage, counted from depth 1, whose step_cosine >= var(persistence_cosine) (0.7); the
-- count stops at the first step below the threshold (or with a NULL cosine) or at the end of
-- the chain. 0 when the first step fails or the feature has no match; chain_length is the
-- chain's last depth (persistence <= chain_length).
select
    release,
    link,
    root_layer as layer,
    root_feature as feature,
    coalesce(
        min(case
            when depth >= 1 and not coalesce(step_cosine >= {{ var('persistence_cosine') }}, false)
                then depth
        end) - 1,
        max(depth)
    ) as persistence,
    max(depth) as chain_length
from {{ ref('fct_feature_lineage') }}
group by release, link, root_layer, root_feature
