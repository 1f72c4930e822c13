-- The origin names of feature flow (contract section 6), defined once: the flow_links module
-- of a best predecessor -> the origin fct_feature_origin gives it, and the order that breaks a
-- tie between modules (resid first: a direction already in the residual stream is carried, not
-- re-written). 'nowhere' (no module) is the origin of a feature whose best predecessor is below
-- the threshold var flow_origin_threshold.
select module, origin, tie_order
from (values
    ('resid', 'resid', 0),
    ('mlp_out', 'mlp', 1),
    ('attn_out', 'attn', 2),
    (cast(null as varchar), 'nowhere', 3)
) as t(module, origin, tie_order)
