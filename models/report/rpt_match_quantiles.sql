-- The matched pairs' cost and cosine per match link and layer pair: 5th, 25th, 50th, 75th and
-- 95th continuous percentiles (box plots). The null model is represented by its draw 0
-- (`random`); later draws (random.<i>) are left out.
with links as (
    select * from {{ ref('dim_links') }}
    where link_kind = 'match' and coalesce(null_draw, 0) = 0
)

select
    l.release,
    l.link,
    l.link_kind,
    l.link_space,
    l.link_method,
    l.is_null,
    m.src_layer,
    m.dst_layer,
    count(*) as n_pairs
    {%- for col in ['cost', 'cosine'] %}
    {%- for q in [5, 25, 50, 75, 95] %},
    percentile_cont({{ q / 100 }}) within group (order by m.{{ col }}) as {{ col }}_p{{ '%02d' % q }}
    {%- endfor %}
    {%- endfor %}
from {{ ref('stg_lake__matches') }} as m
inner join links as l
    on l.release = m.release and l.link_space = m.link_space and l.link_method = m.link_method
group by l.release, l.link, l.link_kind, l.link_space, l.link_method, l.is_null, m.src_layer, m.dst_layer
