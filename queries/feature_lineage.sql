-- A feature's lineage with descriptions: the chain of matches from one root feature forward to
-- the last layer along one match link (fct_feature_lineage), with each feature's description,
-- clusters and activation frequency.
-- Run: saew query queries/feature_lineage.sql
-- Edit the `params` CTE to pick the root: NULLs default to the first release, the link
-- match/decoder/folded (else the first link), layer 0 and feature 0.
with params as (
    select
        cast(null as varchar) as release,
        cast(null as varchar) as link,
        cast(null as integer) as root_layer,
        cast(null as integer) as root_feature
),

chosen as (
    select
        coalesce(p.release, (select min(release) from fct_feature_lineage)) as release,
        coalesce(p.link,
                 (select min(link) from fct_feature_lineage where link = 'match/decoder/folded'),
                 (select min(link) from fct_feature_lineage)) as link,
        coalesce(p.root_layer, 0) as root_layer,
        coalesce(p.root_feature, 0) as root_feature
    from params as p
)

select
    l.depth,
    l.layer,
    l.feature,
    round(l.step_cosine, 4) as step_cosine,
    round(l.step_cost, 4) as step_cost,
    round(l.cum_cost, 4) as cum_cost,
    d.decoder_cluster,
    d.text_cluster,
    round(d.frac_active, 6) as frac_active,
    l.description
from fct_feature_lineage as l
join chosen as c
    on l.release = c.release and l.link = c.link
    and l.root_layer = c.root_layer and l.root_feature = c.root_feature
left join dim_features as d
    on d.release = l.release and d.layer = l.layer and d.feature = l.feature
order by l.depth
