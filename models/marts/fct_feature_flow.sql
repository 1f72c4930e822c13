-- Activation statistics between features of adjacent layers (the stored correlations: pairs
-- that co-occur at least once, top 16 by pearson per source feature).
--   sufficiency = n_both / n_src; necessity = n_both / n_dst;
--   jaccard = n_both / (n_src + n_dst - n_both).
select
    release,
    src_layer,
    src_feature,
    dst_layer,
    dst_feature,
    pearson,
    case when n_src + n_dst - n_both > 0 then {{ as_double('n_both') }} / (n_src + n_dst - n_both) end as jaccard,
    case when n_src > 0 then {{ as_double('n_both') }} / n_src end as sufficiency,
    case when n_dst > 0 then {{ as_double('n_both') }} / n_dst end as necessity,
    n_src,
    n_dst,
    n_both
from {{ ref('stg_lake__correlations') }}
