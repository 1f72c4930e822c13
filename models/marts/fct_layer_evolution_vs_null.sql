-- Each link's layer-pair rates next to its null model's: the seeded random bijection
-- `match/<space>/random` of the same release, cluster space and layer pair, where <space> is
-- the link's own space (for transport/<space>/<solver>, the random match in that space).
-- null_* columns are NULL when the release has no random matches in that space.
-- The random links themselves are left out (they are the nulls).
with evo as (
    select * from {{ ref('fct_layer_evolution') }}
),

links as (
    select distinct release, cluster_space, link, link_space, link_method, link_kind
    from {{ ref('int_links') }}
)

select
    e.release,
    e.cluster_space,
    e.link,
    {{ link_name('match', 'l.link_space', "'random'") }} as null_link,
    e.src_layer,
    e.dst_layer,
    e.survive_rate,
    n.survive_rate as null_survive_rate,
    e.split_rate,
    n.split_rate as null_split_rate,
    e.vanish_rate,
    n.vanish_rate as null_vanish_rate,
    e.merge_rate,
    n.merge_rate as null_merge_rate,
    e.birth_rate,
    n.birth_rate as null_birth_rate,
    e.mean_leak,
    n.mean_leak as null_mean_leak,
    e.h_cond_mean,
    n.h_cond_mean as null_h_cond_mean,
    e.h_aug_mean,
    n.h_aug_mean as null_h_aug_mean,
    e.mi_cond,
    n.mi_cond as null_mi_cond,
    e.mi_aug,
    n.mi_aug as null_mi_aug,
    e.survive_rate - n.survive_rate as survive_rate_excess,
    e.mi_aug - n.mi_aug as mi_aug_excess
from evo as e
inner join links as l
    on l.release = e.release and l.cluster_space = e.cluster_space and l.link = e.link
left join evo as n
    on n.release = e.release
    and n.cluster_space = e.cluster_space
    and n.src_layer = e.src_layer
    and n.dst_layer = e.dst_layer
    and n.link = {{ link_name('match', 'l.link_space', "'random'") }}
where not (l.link_kind = 'match' and l.link_method = 'random')
