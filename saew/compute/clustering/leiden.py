"""Leiden communities of the cosine kNN graph (``--algorithm leiden``), the single-cell standard
(Traag, Waltman & van Eck 2019, "From Louvain to Leiden: guaranteeing well-connected
communities"; as in scanpy's ``tl.leiden`` on a kNN graph).

Graph: one node per distinct unit vector; an undirected edge i - j when j is among the
``n_neighbors`` nearest neighbours of i or i among j's (self excluded), weighted by the cosine
similarity clipped at 0 (edges of weight 0 are dropped). Communities: igraph's C
``community_leiden`` on the modularity objective with ``resolution`` gamma (maximising
Q = (1/2W) sum_ij (A_ij - gamma s_i s_j / 2W) [c_i = c_j]), iterated to convergence and seeded
through igraph's RNG. Communities smaller than ``min_cluster_size`` are noise; community ids are
0.. by decreasing size. Probability of a member: the share of its edge weight that stays inside
its community (0 for noise). The evidence gates (``gates.py``) are applied by the caller.
"""
from __future__ import annotations

import numpy as np

from saew.compute.clustering.config import NOISE, ClusterConfig


def knn_edges(knn: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, weight) of the symmetrised kNN graph, src < dst, each pair once."""
    idx, dist = knn
    n, k = idx.shape
    a = np.repeat(np.arange(n, dtype=np.int64), k)
    b = idx.ravel()
    w = np.clip(1.0 - dist.ravel().astype(np.float64), 0.0, None)
    keep = (a != b) & (w > 0)
    lo, hi, w = np.minimum(a, b)[keep], np.maximum(a, b)[keep], w[keep]
    key, first = np.unique(lo * n + hi, return_index=True)
    return key // n, key % n, w[first]


def leiden_labels(knn: tuple[np.ndarray, np.ndarray], cfg: ClusterConfig
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 with -1 for communities below min_cluster_size, probability float32)."""
    import random

    import igraph as ig

    from saew.compute.activations.graphs import relabel_by_size

    n = knn[0].shape[0]
    src, dst, w = knn_edges(knn)
    if not len(src):
        return np.full(n, NOISE, np.int32), np.zeros(n, np.float32)
    g = ig.Graph(n=n, edges=np.column_stack([src, dst]), directed=False)
    g.es["weight"] = w
    ig.set_random_number_generator(random.Random(int(cfg.seed)))
    try:
        found = g.community_leiden(objective_function="modularity", weights="weight",
                                   resolution=cfg.resolution, n_iterations=-1)
    finally:
        ig.set_random_number_generator(random)
    labels = relabel_by_size(np.asarray(found.membership)).astype(np.int32)
    sizes = np.bincount(labels)
    labels[sizes[labels] < cfg.min_cluster_size] = NOISE
    inside = labels[src] == labels[dst]
    strength = np.bincount(src, w, n) + np.bincount(dst, w, n)
    own = np.bincount(src[inside], w[inside], n) + np.bincount(dst[inside], w[inside], n)
    prob = np.where(labels >= 0, own / np.maximum(strength, 1e-300), 0.0).astype(np.float32)
    return labels, prob
