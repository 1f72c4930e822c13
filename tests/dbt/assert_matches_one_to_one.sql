-- Matchings are one-to-one: within a (release, space, method, src_layer, dst_layer), no
-- destination feature is matched twice (sources are unique by the table's key).
select release, link_space, link_method, src_layer, dst_layer, dst_feature, count(*) as n_sources
from {{ ref('stg_lake__matches') }}
group by release, link_space, link_method, src_layer, dst_layer, dst_feature
having count(*) > 1
