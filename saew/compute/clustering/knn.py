"""Distinct rows and the cosine k-nearest-neighbour graph that both clusterers start from."""
from __future__ import annotations

import numpy as np

from saew.compute.clustering.config import ClusterConfig

EXACT_KNN_MAX = 8192


def unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct row's first occurrence, inverse map row -> distinct row)."""
    x = np.ascontiguousarray(x)
    keys = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)            # distinct rows in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def knn_graph(u: np.ndarray, k: int, cfg: ClusterConfig, seed: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours (self first) under cosine distance 1 - u.v of distinct unit rows:
    (indices int64 [n, k], distances float32 [n, k]).

    Exact (blocked matrix products) up to EXACT_KNN_MAX rows, else NN-descent (pynndescent,
    seeded with ``seed`` (default cfg.seed) and single-threaded unless ``parallel``) with UMAP's
    own settings. Computing it here lets the 15-D and 2-D layouts and Leiden share one graph,
    and avoids UMAP's small-data path (a Python loop over all pairs for the cosine metric).
    """
    n = u.shape[0]
    k = min(k, n)
    if n <= EXACT_KNN_MAX:
        idx = np.empty((n, k), np.int64)
        dist = np.empty((n, k), np.float32)
        for s in range(0, n, 1024):
            d = 1.0 - u[s:s + 1024] @ u.T
            d[np.arange(d.shape[0]), np.arange(s, s + d.shape[0])] = -1.0   # self first
            part = np.argpartition(d, k - 1, axis=1)[:, :k]
            dd = np.take_along_axis(d, part, 1)
            order = np.lexsort((part, dd), axis=1)
            idx[s:s + 1024] = np.take_along_axis(part, order, 1)
            dist[s:s + 1024] = np.maximum(np.take_along_axis(dd, order, 1), 0.0)
        return idx, dist
    from pynndescent import NNDescent

    seed = cfg.seed if seed is None else seed
    index = NNDescent(u, n_neighbors=k, metric="cosine", random_state=None if cfg.parallel else seed,
                      n_trees=min(64, 5 + int(round(n ** 0.5 / 20.0))),
                      n_iters=max(5, int(round(np.log2(n)))), max_candidates=60, low_memory=True,
                      n_jobs=-1 if cfg.parallel else 1, compressed=True)
    idx, dist = index.neighbor_graph
    return idx.astype(np.int64), dist.astype(np.float32)
