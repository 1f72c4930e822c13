-- Flow links checked causally, by the origin of their target (fct_feature_origin): for the
-- targets of each origin (resid | mlp | attn | nowhere), how often switching off their best
-- predecessor in a module (link flow/<module>) drops them by var('causal_confirm_drop').
-- The reverse check of "from nowhere" features: no predecessor's removal should move them,
-- so their confirmed_rate should sit near control_rate; a feature from a module should be
-- confirmed most often through that module's link.
select
    i.release,
    i.dst_layer as layer,
    o.origin,
    i.link,
    count(*) as n_links,
    avg({{ as_double("case when i.confirmed then 1 else 0 end") }}) as confirmed_rate,
    avg({{ as_double("case when i.control_confirmed then 1 when i.control_confirmed is not null then 0 end") }}) as control_rate,
    avg(i.rel_drop) as mean_drop,
    count(i.rel_drop) as n_measured
from {{ ref('fct_link_interventions') }} as i
inner join {{ ref('fct_feature_origin') }} as o
    on o.release = i.release
    and o.layer = i.dst_layer
    and o.feature = i.dst_feature
where i.link like 'flow/%'
group by i.release, i.dst_layer, o.origin, i.link
