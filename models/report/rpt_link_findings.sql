-- The findings per link (null draws left out), summed over its layer pairs (rpt_layer_findings):
-- how many pairs got each verdict, and the fewest null draws any of its pairs had.
select
    release,
    cluster_space,
    link,
    link_kind,
    link_space,
    link_method,
    count(*) as n_pairs,
    sum(case when verdict = 'beyond null' then 1 else 0 end) as n_beyond_null,
    sum(case when verdict = 'within null' then 1 else 0 end) as n_within_null,
    sum(case when verdict = 'no structure' then 1 else 0 end) as n_no_structure,
    sum(case when verdict = 'no null' then 1 else 0 end) as n_no_null,
    min(n_null_draws) as min_null_draws
from {{ ref('rpt_layer_findings') }}
group by release, cluster_space, link, link_kind, link_space, link_method
