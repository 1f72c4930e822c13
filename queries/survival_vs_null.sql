-- Survival per link against the null: for every link, cluster space and layer pair, the
-- survive rate (and MI_aug) next to the null model's (fct_layer_evolution_vs_null): the mean
-- over the seeded random matchings of the same space (n_null_draws of them: random,
-- random.1, ...), their sd, z = (rate - mean) / sd and whether the rate lies outside the null
-- band mean +- 2 sd (NULL with a single draw); `lift` = survive_rate / null_survive_rate.
-- Run: saew query queries/survival_vs_null.sql
select
    release,
    cluster_space,
    link,
    src_layer,
    dst_layer,
    round(survive_rate, 4) as survive_rate,
    round(null_survive_rate, 4) as null_survive_rate,
    round(null_survive_rate_sd, 4) as null_survive_sd,
    n_null_draws,
    round(survive_rate_z, 2) as survive_z,
    survive_rate_beyond_null as survive_beyond_null,
    round(survive_rate_excess, 4) as survive_excess,
    round(survive_rate / nullif(null_survive_rate, 0), 3) as lift,
    round(mi_aug, 4) as mi_aug,
    round(null_mi_aug, 4) as null_mi_aug
from fct_layer_evolution_vs_null
order by release, cluster_space, link, src_layer
