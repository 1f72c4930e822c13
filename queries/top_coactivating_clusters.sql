-- Top co-activating clusters: clusters whose live members fire together most often relative to
-- the layer's background (fct_cluster_coactivation, ranked by npmi_delta = mean NPMI over member
-- pairs - mean NPMI over all pairs of live features), with a few member descriptions.
-- Run: saew query queries/top_coactivating_clusters.sql
with ranked as (
    select
        c.*,
        row_number() over (partition by c.release, c.space order by c.npmi_delta desc) as rank_in_space
    from fct_cluster_coactivation as c
),

examples as (
    select
        d.release, d.layer, cl.space, cl.cluster,
        string_agg(d.description, ' | ' order by d.feature) as member_descriptions
    from clusters as cl
    join dim_features as d
        on d.release = cl.release and d.layer = cl.layer and d.feature = cl.feature
    where d.description is not null
    group by d.release, d.layer, cl.space, cl.cluster
)

select
    r.release,
    r.space,
    r.rank_in_space,
    r.layer,
    r.cluster,
    r.n_members,
    round(r.npmi, 4) as npmi,
    round(r.npmi_background, 4) as npmi_background,
    round(r.npmi_delta, 4) as npmi_delta,
    round(r.jaccard_lift, 3) as jaccard_lift,
    left(e.member_descriptions, 200) as member_descriptions
from ranked as r
left join examples as e
    on e.release = r.release and e.layer = r.layer and e.space = r.space and e.cluster = r.cluster
where r.rank_in_space <= 20
order by r.release, r.space, r.rank_in_space
