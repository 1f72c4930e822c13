-- Each verified link scored (saew verify writes `interventions`: the target's mean activation
-- over the windows where the source is active, clean and with the source switched off):
--   rel_drop          = (act_before - act_after) / act_before, NULL when act_before <= 0
--                       (the target never fired on those windows: nothing to measure)
--   control_rel_drop  = (control_before - control_after) / control_before
--   confirmed         = rel_drop >= var('causal_confirm_drop') (false when not measured)
--   control_confirmed = control_rel_drop >= var('causal_confirm_drop') (NULL without a control)
with scored as (
    select
        *,
        case when act_before > 0 then (act_before - act_after) / act_before end as rel_drop,
        case when control_before > 0
            then (control_before - control_after) / control_before end as control_rel_drop
    from {{ ref('stg_lake__interventions') }}
)

select
    release,
    link,
    src_release,
    src_layer,
    src_feature,
    dst_layer,
    dst_feature,
    n_tokens,
    act_before,
    act_after,
    rel_drop,
    control_rel_drop,
    coalesce(rel_drop >= {{ var('causal_confirm_drop') }}, false) as confirmed,
    control_rel_drop >= {{ var('causal_confirm_drop') }} as control_confirmed
from scored
