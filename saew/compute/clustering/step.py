"""``saew cluster``: UMAP + HDBSCAN clusters of the features of every layer, in one space.

Pipeline per layer (after the cluster-evolution reference, ../shared/seeds/000*: UMAP + HDBSCAN
with a noise-refinement pass; McInnes et al., UMAP, arXiv:1802.03426; Campello et al., HDBSCAN,
PAKDD 2013):

1. Vectors: unit-normalised decoder rows (``--space decoder``) or unit-normalised description
   embeddings of one embedder (``--space text``). Features without a vector (no embedding, or an
   all-zero decoder row) get cluster -2. Identical vectors are clustered once; duplicates
   inherit their representative's cluster, probability and coordinates.
2. A cosine k-nearest-neighbour graph (``--n-neighbors`` 20; exact up to 8192 distinct
   vectors, NN-descent above), then UMAP (cosine metric) on it to ``--n-components`` (15)
   dims, ``--min-dist`` 0.1, ``--n-epochs`` 200, ``--init`` spectral, seeded with ``--seed``.
3. HDBSCAN (``--min-cluster-size`` 8, ``--min-samples`` = min cluster size, ``--selection``
   eom) on the UMAP embedding; label -1 is noise.
4. Refinement (``--no-refine`` turns it off): the noise points alone are re-embedded (UMAP,
   ``--refine-n-neighbors`` 10, ``--refine-min-dist`` 0.05) and re-clustered (HDBSCAN,
   ``--refine-min-cluster-size`` 4, min_samples 1); a new cluster is kept when its coherence in
   the original space is at least ``--refine-min-coherence`` (0.2, the reference's acceptance
   threshold); kept clusters are numbered after the first pass's.
5. Plot coordinates (x, y): a 2-D UMAP layout over the SAME neighbour graph, initialised with
   the first two principal components of the 15-D embedding, ``--xy-epochs`` 100 epochs
   (much cheaper than a second full UMAP).

Determinism: by default UMAP is seeded, which makes its layout single-threaded (UMAP's own
rule); ``--parallel`` drops the seed for a faster, non-reproducible layout. Numba compiles
once per process, so later layers of one command run warm.

``cluster_quality`` (per layer): n_clusters (labels >= 0), noise_frac (features labelled -1 /
features with a vector), coherence, silhouette (see their docstrings), params (JSON).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from saew.errors import BadInput
from saew.storage.names import SPACES

NOISE, NO_VECTOR = -1, -2


@dataclass(frozen=True)
class ClusterConfig:
    n_components: int = 15
    n_neighbors: int = 20
    min_dist: float = 0.1
    n_epochs: int = 200
    init: str = "spectral"
    min_cluster_size: int = 8
    min_samples: int | None = None
    selection: str = "eom"
    refine: bool = True
    refine_n_neighbors: int = 10
    refine_min_dist: float = 0.05
    refine_min_cluster_size: int = 4
    refine_min_coherence: float = 0.2
    xy_epochs: int = 100
    silhouette_sample: int = 4000
    parallel: bool = False
    seed: int = 0


@dataclass(frozen=True)
class LayerClusters:
    labels: np.ndarray         # int32 [n_features]: >= 0 cluster, -1 noise, -2 no vector
    probability: np.ndarray    # float32 [n_features], NaN where -2
    xy: np.ndarray             # float32 [n_features, 2], NaN where -2


# ----------------------------------------------------------------------------- metrics
def cluster_coherences(u: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine within each cluster c >= 0 (ascending label order), float64.

    With unit vectors u_i: sum_{i != j in c} cos(u_i, u_j) = |sum_i u_i|^2 - n_c, so
    coherence_c = (|sum_{i in c} u_i|^2 - n_c) / (n_c (n_c - 1)); NaN for n_c < 2.
    """
    mask = labels >= 0
    if not mask.any():
        return np.zeros(0)
    ids, inv = np.unique(labels[mask], return_inverse=True)
    sums = np.zeros((len(ids), u.shape[1]))
    np.add.at(sums, inv, u[mask].astype(np.float64))
    n = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, ((sums ** 2).sum(1) - n) / (n * (n - 1)), np.nan)


def coherence(u: np.ndarray, labels: np.ndarray) -> float | None:
    """Unweighted mean over clusters of ``cluster_coherences`` (None without a cluster of 2+)."""
    c = cluster_coherences(u, labels)
    c = c[np.isfinite(c)]
    return float(c.mean()) if len(c) else None


def silhouette(u: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> float | None:
    """Silhouette (Rousseeuw 1987) with cosine distance in the original space, over the
    clustered features (label >= 0), on a seeded random sample of at most ``sample`` of them
    (sklearn ``silhouette_score(..., sample_size=, random_state=seed)``). None with < 2 clusters.
    """
    from sklearn.metrics import silhouette_score

    mask = labels >= 0
    k = len(np.unique(labels[mask]))
    if k < 2 or k >= mask.sum():
        return None
    n = int(mask.sum())
    return float(silhouette_score(u[mask], labels[mask], metric="cosine",
                                  sample_size=min(sample, n) if sample and sample < n else None,
                                  random_state=seed))


# ----------------------------------------------------------------------------- steps
def unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct row's first occurrence, inverse map row -> distinct row)."""
    x = np.ascontiguousarray(x)
    keys = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)            # distinct rows in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


EXACT_KNN_MAX = 8192


def knn_graph(u: np.ndarray, k: int, cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours (self first) under cosine distance 1 - u.v of distinct unit rows.

    Exact (blocked matrix products) up to EXACT_KNN_MAX rows, else NN-descent (pynndescent,
    seeded and single-threaded unless ``parallel``) with UMAP's own settings. Computing it here
    lets the 15-D and 2-D layouts share one graph, and avoids UMAP's small-data path (a Python
    loop over all pairs for the cosine metric).
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

    index = NNDescent(u, n_neighbors=k, metric="cosine", random_state=None if cfg.parallel else cfg.seed,
                      n_trees=min(64, 5 + int(round(n ** 0.5 / 20.0))),
                      n_iters=max(5, int(round(np.log2(n)))), max_candidates=60, low_memory=True,
                      n_jobs=-1 if cfg.parallel else 1, compressed=True)
    idx, dist = index.neighbor_graph
    return idx.astype(np.int64), dist.astype(np.float32)


def _umap(knn: tuple[np.ndarray, np.ndarray], x: np.ndarray, n_components: int, min_dist: float,
          n_epochs: int, init, cfg: ClusterConfig) -> np.ndarray:
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


def _hdbscan(e: np.ndarray, min_cluster_size: int, min_samples: int | None,
             selection: str) -> tuple[np.ndarray, np.ndarray]:
    import hdbscan

    if e.shape[0] < max(min_cluster_size, 2):
        return np.full(e.shape[0], NOISE, np.int32), np.zeros(e.shape[0], np.float32)
    h = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                        cluster_selection_method=selection).fit(e.astype(np.float64))
    return h.labels_.astype(np.int32), h.probabilities_.astype(np.float32)


def _can_embed(n: int, n_components: int) -> bool:
    return n > n_components + 2


def refine_noise(u: np.ndarray, labels: np.ndarray, prob: np.ndarray,
                 cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """Second pass on the noise points; keep new clusters with coherence >= the threshold."""
    noise = np.flatnonzero(labels == NOISE)
    if not _can_embed(len(noise), cfg.n_components) or len(noise) < 2 * cfg.refine_min_cluster_size:
        return labels, prob
    sub_u = u[noise]
    e = _umap(knn_graph(sub_u, cfg.refine_n_neighbors, cfg), sub_u, cfg.n_components,
              cfg.refine_min_dist, cfg.n_epochs, cfg.init, cfg)
    sub, sub_p = _hdbscan(e, cfg.refine_min_cluster_size, 1, cfg.selection)
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


def xy_layout(u: np.ndarray, emb: np.ndarray, knn, cfg: ClusterConfig) -> np.ndarray:
    """2-D coordinates for plots: UMAP over the same neighbour graph, initialised with the
    first two principal components of the 15-D embedding."""
    c = emb.astype(np.float64) - emb.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    init = (c @ vt[:2].T).astype(np.float32)
    return _umap(knn, u, 2, cfg.min_dist, cfg.xy_epochs, init, cfg)


def cluster_vectors(u: np.ndarray, cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster distinct unit vectors: (labels int32, probability float32, xy float32 [n, 2])."""
    n = u.shape[0]
    if not _can_embed(n, cfg.n_components):
        return (np.full(n, NOISE, np.int32), np.zeros(n, np.float32),
                np.full((n, 2), np.nan, np.float32))
    knn = knn_graph(u, cfg.n_neighbors, cfg)
    emb = _umap(knn, u, cfg.n_components, cfg.min_dist, cfg.n_epochs, cfg.init, cfg)
    labels, prob = _hdbscan(emb, cfg.min_cluster_size, cfg.min_samples, cfg.selection)
    if cfg.refine:
        labels, prob = refine_noise(u, labels, prob, cfg)
    xy = xy_layout(u, emb, knn, cfg)
    return labels, prob, xy


def cluster_layer(vectors: np.ndarray, has_vector: np.ndarray, cfg: ClusterConfig) -> LayerClusters:
    """Labels for every feature of a layer; ``vectors`` rows where ``has_vector`` is False are ignored."""
    from saew.sae.costs import unit_rows

    n = len(has_vector)
    labels = np.full(n, NO_VECTOR, np.int32)
    prob = np.full(n, np.nan, np.float32)
    xy = np.full((n, 2), np.nan, np.float32)
    idx = np.flatnonzero(has_vector)
    if len(idx):
        u = unit_rows(vectors[idx])
        first, inverse = unique_rows(u)
        lab_u, prob_u, xy_u = cluster_vectors(u[first], cfg)
        labels[idx], prob[idx], xy[idx] = lab_u[inverse], prob_u[inverse], xy_u[inverse]
    return LayerClusters(labels, prob, xy)


# ----------------------------------------------------------------------------- I/O
def layer_vectors(lake, release: str, layer: int, space: str,
                  embedder: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors [d_sae, dim] float32, has_vector bool [d_sae]) of one layer in one space."""
    from saew.storage.saes import d_sae, load_sae

    if space == "decoder":
        w = load_sae(lake, release, layer).w_dec.astype(np.float32)
        return w, np.linalg.norm(w, axis=1) > 0
    from saew.storage.reads import load_embeddings

    n = d_sae(lake, release, layer)
    feats, emb = load_embeddings(lake, release, layer, embedder)
    if len(feats) and feats.max() >= n:
        raise BadInput(f"release {release!r} layer {layer}: embeddings of features beyond "
                       f"d_sae {n}")
    vec = np.zeros((n, emb.shape[1] if emb.ndim == 2 else 0), np.float32)
    has = np.zeros(n, bool)
    vec[feats], has[feats] = emb, True
    has &= np.linalg.norm(vec, axis=1) > 0
    return vec, has


def quality(vectors: np.ndarray, res: LayerClusters, cfg: ClusterConfig) -> dict:
    from saew.sae.costs import unit_rows

    has = res.labels != NO_VECTOR
    u = unit_rows(vectors[has]) if has.any() else np.zeros((0, 1), np.float32)
    lab = res.labels[has]
    return {
        "n_clusters": int(len(np.unique(lab[lab >= 0]))),
        "noise_frac": float((lab == NOISE).mean()) if len(lab) else None,
        "coherence": coherence(u, lab),
        "silhouette": silhouette(u, lab, cfg.silhouette_sample, cfg.seed),
        # filled by the evidence gates (issue 14); NULL until then
        "stability_ari": None, "silhouette_null": None, "coherence_null": None,
        "largest_share": None, "has_structure": None,
    }


def add_arguments(p) -> None:
    d = ClusterConfig()
    p.add_argument("--release", required=True)
    p.add_argument("--space", required=True, choices=SPACES,
                   help="decoder (decoder rows) or text (description embeddings)")
    p.add_argument("--embedder", default=None,
                   help="text space: which embeddings (default: the only one present, else "
                        "all-MiniLM-L6-v2)")
    p.add_argument("--layer", type=int, action="append", default=None,
                   help="cluster only this layer (repeatable; default: every layer)")
    p.add_argument("--n-components", type=int, default=d.n_components,
                   help=f"UMAP dimensions clustered by HDBSCAN (default {d.n_components})")
    p.add_argument("--n-neighbors", type=int, default=d.n_neighbors,
                   help=f"UMAP neighbours (default {d.n_neighbors})")
    p.add_argument("--min-dist", type=float, default=d.min_dist,
                   help=f"UMAP min_dist (default {d.min_dist})")
    p.add_argument("--n-epochs", type=int, default=d.n_epochs,
                   help=f"UMAP optimisation epochs (default {d.n_epochs})")
    p.add_argument("--init", choices=("spectral", "random", "pca"), default=d.init,
                   help=f"UMAP initialisation (default {d.init})")
    p.add_argument("--min-cluster-size", type=int, default=d.min_cluster_size,
                   help=f"HDBSCAN min_cluster_size (default {d.min_cluster_size})")
    p.add_argument("--min-samples", type=int, default=None,
                   help="HDBSCAN min_samples (default: the min cluster size)")
    p.add_argument("--selection", choices=("eom", "leaf"), default=d.selection,
                   help=f"HDBSCAN cluster_selection_method (default {d.selection})")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="skip the second pass that re-clusters the noise points")
    p.add_argument("--refine-n-neighbors", type=int, default=d.refine_n_neighbors,
                   help=f"second pass: UMAP neighbours (default {d.refine_n_neighbors})")
    p.add_argument("--refine-min-dist", type=float, default=d.refine_min_dist,
                   help=f"second pass: UMAP min_dist (default {d.refine_min_dist})")
    p.add_argument("--refine-min-cluster-size", type=int, default=d.refine_min_cluster_size,
                   help=f"second pass: HDBSCAN min_cluster_size, min_samples 1 "
                        f"(default {d.refine_min_cluster_size})")
    p.add_argument("--refine-min-coherence", type=float, default=d.refine_min_coherence,
                   help="second pass: keep a new cluster when its mean pairwise cosine is at "
                        f"least this (default {d.refine_min_coherence})")
    p.add_argument("--xy-epochs", type=int, default=d.xy_epochs,
                   help=f"epochs of the 2-D plot layout (default {d.xy_epochs})")
    p.add_argument("--silhouette-sample", type=int, default=d.silhouette_sample,
                   help="silhouette on a seeded sample of this many clustered features "
                        f"(default {d.silhouette_sample}; 0 = all)")
    p.add_argument("--workers", type=int, default=None,
                   help="layers clustered at once, each in its own single-threaded process "
                        "(default: min(2, CPU count, layers)); results do not depend on it")
    p.add_argument("--parallel", action="store_true",
                   help="multi-threaded UMAP without a seed: faster, not reproducible")


def config_from_args(args) -> ClusterConfig:
    cfg = ClusterConfig(
        n_components=args.n_components, n_neighbors=args.n_neighbors, min_dist=args.min_dist,
        n_epochs=args.n_epochs, init=args.init, min_cluster_size=args.min_cluster_size,
        min_samples=args.min_samples, selection=args.selection, refine=args.refine,
        refine_n_neighbors=args.refine_n_neighbors, refine_min_dist=args.refine_min_dist,
        refine_min_cluster_size=args.refine_min_cluster_size,
        refine_min_coherence=args.refine_min_coherence, xy_epochs=args.xy_epochs,
        silhouette_sample=args.silhouette_sample, parallel=args.parallel, seed=args.seed)
    checks = {"--n-components": cfg.n_components >= 1, "--n-neighbors": cfg.n_neighbors >= 2,
              "--min-dist": cfg.min_dist >= 0, "--n-epochs": cfg.n_epochs >= 1,
              "--min-cluster-size": cfg.min_cluster_size >= 2,
              "--min-samples": cfg.min_samples is None or cfg.min_samples >= 1,
              "--refine-n-neighbors": cfg.refine_n_neighbors >= 2,
              "--refine-min-dist": cfg.refine_min_dist >= 0,
              "--refine-min-cluster-size": cfg.refine_min_cluster_size >= 2,
              "--xy-epochs": cfg.xy_epochs >= 1, "--silhouette-sample": cfg.silhouette_sample >= 0,
              "--workers": getattr(args, "workers", None) is None or args.workers >= 1}
    for opt, ok in checks.items():
        if not ok:
            raise BadInput(f"{opt} {getattr(args, opt[2:].replace('-', '_'))}: out of range")
    return cfg


def run(args, ctx) -> str:
    from saew.progress import progress
    from saew.storage.saes import require_release

    from saew.compute.parallel import default_workers

    lake, release = ctx.lake, args.release
    cfg = config_from_args(args)
    all_layers = require_release(lake, release)
    todo = all_layers if not args.layer else sorted(set(args.layer))
    missing = [L for L in todo if L not in all_layers]
    if missing:
        raise BadInput(f"--layer {missing[0]}: release {release!r} has no SAE at that layer "
                       f"(layers: {', '.join(map(str, all_layers))})")
    embedder = None
    if args.space == "text":
        from saew.storage.reads import pick_embedder

        embedder = pick_embedder(lake, release, args.embedder)
    params = json.dumps({**asdict(cfg), "space": args.space, "embedder": embedder,
                         "metric": "cosine", "hdbscan": "hdbscan"}, sort_keys=True)
    lines = []
    workers = 1 if cfg.parallel else (default_workers(len(todo)) if args.workers is None
                                      else min(args.workers, len(todo)))
    jobs = ((L, *layer_vectors(lake, release, L, args.space, embedder)) for L in todo)
    for L, res, q in progress(cluster_layers(jobs, cfg, workers), total=len(todo),
                              desc=f"cluster {args.space}"):
        lake.write("clusters", {
            "feature": np.arange(len(res.labels), dtype=np.int32), "cluster": res.labels,
            "probability": _nullable(res.probability), "x": _nullable(res.xy[:, 0]),
            "y": _nullable(res.xy[:, 1])}, release=release, layer=int(L), space=args.space)
        lake.write("cluster_quality", {k: [v] for k, v in {**q, "params": params}.items()},
                   release=release, layer=int(L), space=args.space)
        lines.append(f"layer {L}: {q['n_clusters']} clusters, noise {q['noise_frac'] or 0:.1%}")
    return f"clustered release {release!r} in {args.space} space" + \
        (f" (embedder {embedder})" if embedder else "") + "\n" + "\n".join(lines)


def _cluster_job(L: int, vec: np.ndarray, has: np.ndarray, cfg: ClusterConfig):
    res = cluster_layer(vec, has, cfg)
    return L, res, quality(vec, res, cfg)


def cluster_layers(jobs, cfg: ClusterConfig, workers: int = 1):
    """Yield (layer, LayerClusters, quality) for each (layer, vectors, has_vector) of ``jobs``,
    in order; with ``workers`` > 1 in that many single-threaded worker processes
    (``compute.parallel``): a seeded UMAP is single-threaded, so this is where the cores help,
    and the results are identical to the serial ones."""
    from saew.compute.parallel import ordered_map

    return ordered_map(_cluster_job, ((L, vec, has, cfg) for L, vec, has in jobs), workers)


def _nullable(a: np.ndarray):
    import pyarrow as pa

    a = np.asarray(a, np.float32)
    return pa.array(a, type=pa.float32(), mask=~np.isfinite(a))
