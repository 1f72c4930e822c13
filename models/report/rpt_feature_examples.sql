-- The feature browser: the activation examples of each feature (the lake's `examples`): the top
-- var(browse_examples) by rank, and every quantile sample. shade gives each token of the window
-- its activation as a level 0..9 of the feature's largest example value:
--   shade_t = clamp(round(9 * acts_t / max_value), 0, 9), max_value = max(value) over the
--   feature's examples (0 where max_value <= 0).
with examples as (
    select
        *,
        max(value) over (partition by release, layer, feature) as max_value
    from {{ ref('stg_lake__examples') }}
    where kind <> 'top' or rank < {{ var('browse_examples', 10) }}
)

select
    release,
    layer,
    feature,
    kind,
    rank,
    tokens,
    acts,
    peak,
    value,
    list_transform(
        acts,
        lambda a: case when max_value > 0 then cast(greatest(0, least(9, round(9 * a / max_value))) as integer) else 0 end
    ) as shade
from examples
order by release, layer, feature, kind desc, rank
