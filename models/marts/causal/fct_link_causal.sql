-- How often a data-free link is causally confirmed, per link and layer pair, against controls
-- (contract section 6), over the links saew verify sampled:
--   confirmed_rate = share of the links with rel_drop >= var('causal_confirm_drop')
--                    (links whose target never fired on the windows count as not confirmed)
--   control_rate   = the same share for the control features (over the links with a control)
--   mean_drop      = mean rel_drop over the measured links (n_measured: act_before > 0)
select
    release,
    link,
    src_layer,
    dst_layer,
    count(*) as n_links,
    avg({{ as_double("case when confirmed then 1 else 0 end") }}) as confirmed_rate,
    avg({{ as_double("case when control_confirmed then 1 when control_confirmed is not null then 0 end") }}) as control_rate,
    avg(rel_drop) as mean_drop,
    count(rel_drop) as n_measured,
    avg(control_rel_drop) as mean_control_drop
from {{ ref('fct_link_interventions') }}
group by release, link, src_layer, dst_layer
