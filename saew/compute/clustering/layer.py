"""One layer's clusters: vectors -> distinct unit rows -> kNN graph -> clusterer -> evidence gates
-> labels, probabilities and plot coordinates for every feature (+ stability reruns).

- Features without a vector (no embedding, or an all-zero decoder row) get -2. Identical
  vectors are clustered once; duplicates inherit their representative's label, probability
  and coordinates.
- ``hdbscan``: UMAP + HDBSCAN (``umap_hdbscan.py``), gates, then the noise-refinement pass and
  the gates again for the clusters it adds; ``leiden``: Leiden on the kNN graph
  (``leiden.py``), gates. Every reported cluster has passed the gates (``gates.py``); the
  coherence null is drawn once per layer and seed. Final ids are 0.. in the order found.
- ``stability`` N > 0: the labels again with seeds seed+1 .. seed+N (UMAP, NN-descent, Leiden,
  the member gate's sample; no plot layout), kept for ``quality.stability_ari``. The cluster
  gate's null is a property of the layer, not of a run: the reruns gate against the first
  run's (drawn with ``seed``), which saves a null per rerun.
- The gate's null and the 2-D plot layout depend only on the vectors and the kNN graph
  (``side_job``), not on the clusterer's run, so on a layer of at least SIDE_MIN distinct
  vectors a caller with a spare core (``side``: ``saew cluster`` sets it when it runs its
  layers in this process) computes them in one more process (``Executor.background``) while
  UMAP + HDBSCAN run here (a seeded UMAP is single-threaded). The results are
  the same either way: the same function of the same inputs. Measured (bench/cluster.py,
  32,768 x 768): 42.5 s against 44.7 s in one process, plain umap + hdbscan 31.5 s. Not for
  Leiden, whose run is shorter than the side process's start + null + layout (29.9 s with it,
  25.2 s without).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from saew.compute.clustering.config import NO_VECTOR, NOISE, ClusterConfig
from saew.compute.clustering.gates import coherence_null, gate
from saew.compute.clustering.knn import EXACT_KNN_MAX, knn_graph, unique_rows
from saew.compute.clustering.umap_hdbscan import can_embed, first_pass, refine_noise, xy_layout

SIDE_MIN = 16384    # distinct vectors from which ``side`` runs the null and the layout aside


@dataclass(frozen=True)
class LayerClusters:
    labels: np.ndarray         # int32 [n_features]: >= 0 cluster, -1 noise, -2 no vector
    probability: np.ndarray    # float32 [n_features], NaN where -2
    xy: np.ndarray             # float32 [n_features, 2], NaN where -2
    reruns: tuple[np.ndarray, ...] = ()   # labels [n_features] of the stability reruns
    gated: bool = True         # every cluster beat its null (has_structure is meaningful)


def gated(cfg: ClusterConfig) -> bool:
    """Whether every cluster had to beat its null (the cluster gate is on)."""
    return cfg.null_quantile > 0


def _dense(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    hit = labels >= 0
    out[hit] = np.unique(labels[hit], return_inverse=True)[1]
    return out


def layer_null(u: np.ndarray, cfg: ClusterConfig):
    """The cluster gate's null of a layer's distinct unit vectors (None when the gate is off)."""
    if cfg.null_quantile <= 0 or u.shape[0] < 2:
        return None
    return coherence_null(u, cfg.null_quantile, cfg.null_draws, cfg.seed, cfg.null)


def cluster_labels(u: np.ndarray, cfg: ClusterConfig, knn=None, null=None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels int32, probability float32, 15-D embedding or None) of distinct unit vectors,
    every cluster through the gates (``null``: the layer's, or a function returning it, asked
    for once the clusterer has proposed its clusters; computed here when not given)."""
    n = u.shape[0]
    if n < 2 or (cfg.algorithm == "hdbscan" and not can_embed(n, cfg.n_components)):
        return np.full(n, NOISE, np.int32), np.zeros(n, np.float32), None
    knn = knn_graph(u, cfg.n_neighbors, cfg) if knn is None else knn
    emb = None
    if cfg.algorithm == "leiden":
        from saew.compute.clustering.leiden import leiden_labels

        labels, prob = leiden_labels(knn, cfg)
        null = _resolve(u, cfg, null)
        labels = gate(u, labels, null, cfg.member_quantile, cfg.min_cluster_size, cfg.seed)
    else:
        labels, prob, emb = first_pass(u, knn, cfg)
        null = _resolve(u, cfg, null)
        labels = gate(u, labels, null, cfg.member_quantile, cfg.min_cluster_size, cfg.seed)
        if cfg.refine:
            top = int(labels.max(initial=-1))
            refined, prob = refine_noise(u, labels, np.where(labels >= 0, prob, 0.0).astype(np.float32), cfg)
            new = np.where(refined > top, refined, NOISE)
            new = gate(u, new, null, cfg.member_quantile, cfg.refine_min_cluster_size, cfg.seed)
            labels = np.where(labels >= 0, labels, new).astype(np.int32)
    prob = np.where(labels >= 0, prob, 0.0).astype(np.float32)
    return _dense(labels).astype(np.int32), prob, emb


def _resolve(u: np.ndarray, cfg: ClusterConfig, null):
    if null is None:
        return layer_null(u, cfg)
    return null() if callable(null) else null


def side_job(u: np.ndarray, knn, cfg: ClusterConfig) -> tuple[Any, np.ndarray]:
    """(the gate's null, the 2-D plot layout) of distinct unit vectors and their kNN graph:
    what a layer needs besides its clusterer's run (module docstring)."""
    n = u.shape[0]
    xy = (xy_layout(u, None, knn, cfg) if knn is not None and can_embed(n, cfg.n_components)
          else np.full((n, 2), np.nan, np.float32))
    return layer_null(u, cfg), xy


def cluster_vectors(u: np.ndarray, cfg: ClusterConfig, knn=None, side: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Cluster distinct unit vectors: (labels int32, probability float32, xy float32 [n, 2],
    the gate's null). ``side``: ``side_job`` in one more process on a layer of at least
    SIDE_MIN vectors (module docstring); else in this process, when the gate asks for it."""
    from saew.compute.executor import Executor, ExecutorConfig

    n = u.shape[0]
    knn = knn_graph(u, cfg.n_neighbors, cfg) if knn is None and n >= 2 else knn
    aside = side and n >= SIDE_MIN and cfg.algorithm == "hdbscan"
    with Executor(ExecutorConfig()).background(side_job, u, knn, cfg, enabled=aside) as job:
        labels, prob, _ = cluster_labels(u, cfg, knn, lambda: job.result()[0])
        null, xy = job.result()
    return labels, prob, xy, null


def cluster_layer(vectors: np.ndarray, has_vector: np.ndarray, cfg: ClusterConfig,
                  side: bool = False) -> LayerClusters:
    """Labels for every feature of a layer; ``vectors`` rows where ``has_vector`` is False are
    ignored. ``side`` as in ``cluster_vectors``: the results do not depend on it.

    Runs with one BLAS / OpenMP thread wherever it is called, as in a worker (the executor's
    workers are single-threaded): UMAP amplifies the last-bit differences of a two-thread
    matrix product, so a layer clustered in the driver gave other labels than the same layer
    in a worker (minilm demo, decoder layer 2: 24 clusters against 18), and re-clustering
    one layer left its transport plans stale."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _cluster_layer(vectors, has_vector, cfg, side)


def _cluster_layer(vectors: np.ndarray, has_vector: np.ndarray, cfg: ClusterConfig,
                   side: bool) -> LayerClusters:
    from saew.sae.costs import unit_rows

    n = len(has_vector)
    labels = np.full(n, NO_VECTOR, np.int32)
    prob = np.full(n, np.nan, np.float32)
    xy = np.full((n, 2), np.nan, np.float32)
    reruns = []
    idx = np.flatnonzero(has_vector)
    if len(idx):
        u = unit_rows(vectors[idx])
        first, inverse = unique_rows(u)
        ud = u[first]
        knn = knn_graph(ud, cfg.n_neighbors, cfg) if len(ud) >= 2 else None
        # the layer's null: the reruns gate against the same one
        lab_u, prob_u, xy_u, null = cluster_vectors(ud, cfg, knn, side)
        labels[idx], prob[idx], xy[idx] = lab_u[inverse], prob_u[inverse], xy_u[inverse]
        for i in range(1, cfg.stability + 1):
            c = replace(cfg, seed=cfg.seed + i)
            same_graph = knn is not None and len(ud) <= EXACT_KNN_MAX
            r = np.full(n, NO_VECTOR, np.int32)
            r[idx] = cluster_labels(ud, c, knn if same_graph else None, null)[0][inverse]
            reruns.append(r)
    return LayerClusters(labels, prob, xy, tuple(reruns), gated(cfg))
