-- One lineage step per match: the matches of every lineage link (int_lineage_links: null draws
-- after the first are left out) with their link_id and integer node keys (macro node_key:
-- layer * 2^32 + feature) for the source and destination features.
select
    l.link_id,
    m.release,
    l.link,
    m.src_layer,
    m.src_feature,
    m.dst_layer,
    m.dst_feature,
    m.cost,
    m.cosine,
    {{ node_key('m.src_layer', 'm.src_feature') }} as src_key,
    {{ node_key('m.dst_layer', 'm.dst_feature') }} as dst_key
from {{ ref('stg_lake__matches') }} as m
inner join {{ ref('int_lineage_links') }} as l
    on l.release = m.release and l.link_space = m.link_space and l.link_method = m.link_method
