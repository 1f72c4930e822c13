-- Survival per link against the null: for every link, cluster space and layer pair, the
-- survive rate (and MI_aug) next to those of the seeded random matching of the same space
-- (fct_layer_evolution_vs_null); `lift` = survive_rate / null_survive_rate.
-- Run: saew query queries/survival_vs_null.sql
select
    release,
    cluster_space,
    link,
    src_layer,
    dst_layer,
    round(survive_rate, 4) as survive_rate,
    round(null_survive_rate, 4) as null_survive_rate,
    round(survive_rate_excess, 4) as survive_excess,
    round(survive_rate / nullif(null_survive_rate, 0), 3) as lift,
    round(mi_aug, 4) as mi_aug,
    round(null_mi_aug, 4) as null_mi_aug
from fct_layer_evolution_vs_null
order by release, cluster_space, link, src_layer
