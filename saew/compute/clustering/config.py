"""The settings of ``saew cluster`` (one frozen dataclass) and the labels it writes.

The defaults issue 14 asked to choose (algorithm, the oversized-cluster cap, the gates) were
chosen on the planted benchmark (``bench/planted.py``: adjusted Rand index against planted
clusters in six regimes) and on the smollm2 demo's 30 layers in both spaces
(``bench/cluster.py --home``: clusters, largest share, has_structure, silhouette vs its null):
hdbscan was at least as good as leiden in every planted regime (0.87 vs 0.57 mean ARI in
``all`` in 96-D; 0.97 vs 0.85 in 384-D) and found 151-225 text clusters per layer where
leiden kept 6-13; the 0.5 cap removed the root-split collapse (text layers 9, 24, 25;
decoder layers holding 74-99% in one cluster) and the gates the background rows and the
spurious clusters.
"""
from __future__ import annotations

from dataclasses import dataclass

NOISE, NO_VECTOR = -1, -2
ALGORITHMS = ("hdbscan", "leiden")


@dataclass(frozen=True)
class ClusterConfig:
    algorithm: str = "hdbscan"         # hdbscan: UMAP + HDBSCAN; leiden: Leiden on the kNN graph
    # neighbour graph (both algorithms) and UMAP
    n_components: int = 15
    n_neighbors: int = 20
    min_dist: float = 0.1
    n_epochs: int = 200
    init: str = "spectral"
    # HDBSCAN
    min_cluster_size: int = 8          # also the smallest Leiden community kept
    min_samples: int | None = None
    selection: str = "eom"
    max_cluster_share: float = 0.5     # eom may not select a cluster above this share of the layer (0: off)
    # Leiden
    resolution: float = 1.0
    # noise refinement (hdbscan only)
    refine: bool = True
    refine_n_neighbors: int = 10
    refine_min_dist: float = 0.05
    refine_min_cluster_size: int = 4
    refine_min_coherence: float = 0.2
    # evidence gates (gates.py)
    null: str = "greedy"               # random: random same-size groups; search: also a structureless surrogate's tightest balls; greedy: also its best greedily grown groups
    null_quantile: float = 0.99        # a cluster must beat this quantile of the null (0: no cluster gate)
    member_quantile: float = 0.99      # a member must beat this quantile of random features (0: off)
    null_draws: int = 1000             # random groups per size of the null grid
    # outputs
    xy_epochs: int = 100
    silhouette_sample: int = 4000
    stability: int = 0                 # extra runs with seeds seed+1..seed+N for stability_ari
    parallel: bool = False
    seed: int = 0

