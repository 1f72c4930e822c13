"""UMAP + HDBSCAN on a layer's distinct unit vectors, with a noise-refinement pass, and the 2-D
plot layout (after ../shared/seeds/000*; McInnes et al., UMAP, arXiv:1802.03426; Campello et
al., HDBSCAN, PAKDD 2013).

1. UMAP (cosine) over the precomputed kNN graph (``knn.py``) to ``n_components`` dims.
2. HDBSCAN (``min_cluster_size``, ``min_samples``, ``selection``) on the embedding; label -1 is
   noise. With excess-of-mass selection, no cluster may hold more than ``max_cluster_share`` of
   the layer's distinct vectors (HDBSCAN's ``max_cluster_size``: an oversized node of the
   condensed tree gives way to its children, an oversized leaf becomes noise). This is what
   stops the root-split collapse, where eom returns {a compact outlier group} and {everything
   else} although the big branch has clusters inside (measured in ``bench/planted.py``,
   regime ``outlier``, and on the smollm2 demo's text layers 9, 24, 25).
3. Refinement (``refine``): the noise points alone are re-embedded (UMAP, ``refine_n_neighbors``,
   ``refine_min_dist``) and re-clustered (HDBSCAN, ``refine_min_cluster_size``, min_samples 1,
   the same cap); a new cluster is kept when its coherence in the original space is at least
   ``refine_min_coherence`` (the reference's acceptance threshold); kept clusters are numbered
   after the first pass's. The evidence gates (``gates.py``) are applied by the caller.
4. Plot coordinates: a 2-D UMAP over the same kNN graph, initialised with the first two
   principal components of the vectors, ``xy_epochs`` epochs (independent of the clusterer's
   run, so it can run beside it: ``layer.side_job``).

Determinism: UMAP is seeded with ``seed``, which makes it single-threaded (UMAP's own rule);
``parallel`` drops the seed for a faster, non-reproducible layout.
"""
from __future__ import annotations

import numpy as np

from saew.compute.clustering.config import NOISE, ClusterConfig
from saew.compute.clustering.knn import knn_graph
from saew.compute.clustering.quality import cluster_coherences


def can_embed(n: int, n_components: int) -> bool:
    return n > n_components + 2


def umap_embed(knn: tuple[np.ndarray, np.ndarray], x: np.ndarray, n_components: int,
               min_dist: float, n_epochs: int, init, cfg: ClusterConfig) -> np.ndarray:
    """UMAP (cosine) of ``x`` over a precomputed neighbour graph; float32 [n, n_components]."""
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = umap.UMAP(
            n_components=n_components, n_neighbors=knn[0].shape[1], min_dist=min_dist,
            metric="cosine", n_epochs=n_epochs, init=init, low_memory=True,
            random_state=None if cfg.parallel else cfg.seed, n_jobs=-1 if cfg.parallel else 1,
            precomputed_knn=(knn[0].copy(), knn[1].copy()), force_approximation_algorithm=True)
        return model.fit_transform(x).astype(np.float32)


def max_size(cfg: ClusterConfig, n: int) -> int:
    """HDBSCAN's max_cluster_size for a layer of ``n`` distinct vectors (0: no cap)."""
    if cfg.max_cluster_share <= 0 or cfg.selection != "eom":
        return 0
    return max(int(cfg.max_cluster_share * n), cfg.min_cluster_size)


def run_hdbscan(e: np.ndarray, min_cluster_size: int, min_samples: int | None, selection: str,
                max_cluster_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN labels (int32, -1 noise) and membership probabilities (float32) of the rows of ``e``."""
    import hdbscan

    if e.shape[0] < max(min_cluster_size, 2):
        return np.full(e.shape[0], NOISE, np.int32), np.zeros(e.shape[0], np.float32)
    h = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                        cluster_selection_method=selection,
                        max_cluster_size=max_cluster_size).fit(e.astype(np.float64))
    return h.labels_.astype(np.int32), h.probabilities_.astype(np.float32)


def refine_noise(u: np.ndarray, labels: np.ndarray, prob: np.ndarray,
                 cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """Second pass on the noise points; keep new clusters with coherence >= the threshold."""
    noise = np.flatnonzero(labels == NOISE)
    if not can_embed(len(noise), cfg.n_components) or len(noise) < 2 * cfg.refine_min_cluster_size:
        return labels, prob
    sub_u = u[noise]
    e = umap_embed(knn_graph(sub_u, cfg.refine_n_neighbors, cfg), sub_u, cfg.n_components,
                   cfg.refine_min_dist, cfg.n_epochs, cfg.init, cfg)
    sub, sub_p = run_hdbscan(e, cfg.refine_min_cluster_size, 1, cfg.selection, max_size(cfg, len(u)))
    if not (sub >= 0).any():
        return labels, prob
    ids = np.unique(sub[sub >= 0])
    good = ids[cluster_coherences(u[noise], sub) >= cfg.refine_min_coherence]
    new_id = np.full(int(ids.max()) + 1, NOISE, np.int32)
    new_id[good] = int(labels.max(initial=-1)) + 1 + np.arange(len(good), dtype=np.int32)
    hit = sub >= 0
    mapped = np.where(hit, new_id[np.where(hit, sub, 0)], NOISE)
    labels, prob = labels.copy(), prob.copy()
    labels[noise] = mapped
    prob[noise] = np.where(mapped >= 0, sub_p, 0.0)
    return labels, prob


def first_pass(u: np.ndarray, knn, cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probability, 15-D embedding) of UMAP + HDBSCAN on distinct unit vectors."""
    emb = umap_embed(knn, u, cfg.n_components, cfg.min_dist, cfg.n_epochs, cfg.init, cfg)
    labels, prob = run_hdbscan(emb, cfg.min_cluster_size, cfg.min_samples, cfg.selection,
                               max_size(cfg, len(u)))
    return labels, prob, emb


def pca2(x: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``x`` (float32 [n, 2]): an SVD of the
    centred rows when they are narrow, else the top eigenvectors of their d x d scatter."""
    c = x.astype(np.float64) - x.mean(0)
    if c.shape[1] <= 64:
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        return (c @ vt[:2].T).astype(np.float32)
    _, vec = np.linalg.eigh(c.T @ c)
    return (c @ vec[:, ::-1][:, :2]).astype(np.float32)


def xy_layout(u: np.ndarray, emb: np.ndarray | None, knn, cfg: ClusterConfig) -> np.ndarray:
    """2-D coordinates for plots: UMAP over the same neighbour graph, initialised with the
    first two principal components of ``emb`` when given, else of ``u`` (what
    ``layer.side_job`` does)."""
    return umap_embed(knn, u, 2, cfg.min_dist, cfg.xy_epochs, pca2(u if emb is None else emb), cfg)
