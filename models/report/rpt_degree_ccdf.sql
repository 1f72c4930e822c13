-- Degree distribution of each layer's co-activation graph (graph_degrees, written by
-- `saew communities`: nodes are the live features, edges the pairs above its NPMI threshold),
-- as complementary CDFs over the nodes with at least one edge (degree >= 1):
--   ccdf(d)        = nodes with degree >= d / nodes with degree >= 1;
--   ccdf_random(d) = the same for the seeded random graph G(n, m) with the same nodes and edges.
with d as (
    select release, layer, degree, n_nodes, n_nodes_random
    from {{ ref('stg_lake__graph_degrees') }}
    where degree >= 1
)

select
    release,
    layer,
    degree,
    n_nodes,
    {{ as_double('sum(n_nodes) over (partition by release, layer order by degree desc rows between unbounded preceding and current row)') }}
        / nullif(sum(n_nodes) over (partition by release, layer), 0) as ccdf,
    n_nodes_random,
    {{ as_double('sum(n_nodes_random) over (partition by release, layer order by degree desc rows between unbounded preceding and current row)') }}
        / nullif(sum(n_nodes_random) over (partition by release, layer), 0) as ccdf_random
from d
