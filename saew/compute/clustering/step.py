"""``saew cluster``: clusters of the features of every layer, in one space, that a researcher
can trust: every cluster beats a per-layer null (issue 14).

Per layer (``layer.py``): unit vectors (decoder rows for ``--space decoder``, description
embeddings of one embedder for ``--space text``) -> a cosine kNN graph -> ``--algorithm``
``hdbscan`` (UMAP + HDBSCAN with a noise-refinement pass, after ../shared/seeds/000*;
``umap_hdbscan.py``) or ``leiden`` (Leiden communities of the kNN graph; ``leiden.py``) -> the
evidence gates (``gates.py``: a member must be closer to its cluster than random features are,
a cluster more coherent than random groups of its size) -> 2-D plot coordinates.

``clusters``: one row per feature (-1 noise, -2 no vector). ``cluster_quality`` (per layer,
``quality.py``): n_clusters, noise_frac (-1 / features with a vector), coherence, silhouette,
their shuffled-label nulls, largest_share, has_structure, stability_ari (``--stability N``),
params (JSON of the settings).

Layers are units (``compute.units``): each is read and clustered by one call of ``_cluster_job``
through the executor (``--executor local|ray``, ``--workers`` single-threaded processes or
Ray tasks: a seeded UMAP is single-threaded; the results do not depend on either) and
committed as soon as it is done, so a failure keeps the layers before it and a re-run does
only the rest. Numba compiles once per process.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial

import numpy as np

from saew.compute.clustering.config import ALGORITHMS, ClusterConfig
from saew.compute.clustering.gates import GREEDY_POOL_LARGE, NULLS
from saew.compute.clustering.layer import LayerClusters, cluster_layer
from saew.compute.options import add_executor_arguments
from saew.errors import BadInput
from saew.storage.names import SPACES


def layer_vectors(lake, release: str, layer: int, space: str,
                  embedder: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors [d_sae, dim] float32, has_vector bool [d_sae]) of one layer in one space."""
    from saew.storage.saes import d_sae, load_decoder

    if space == "decoder":
        w = load_decoder(lake, release, layer).astype(np.float32)
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
    """The ``cluster_quality`` scores of one layer (``quality.layer_quality``)."""
    from saew.compute.clustering.quality import layer_quality

    return layer_quality(vectors, res.labels, cfg.silhouette_sample, cfg.seed, list(res.reruns),
                         res.gated)


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
    p.add_argument("--algorithm", choices=ALGORITHMS, default=d.algorithm,
                   help="hdbscan (UMAP + HDBSCAN + refinement) or leiden (Leiden communities "
                        f"of the cosine kNN graph) (default {d.algorithm})")
    p.add_argument("--n-neighbors", type=int, default=d.n_neighbors,
                   help=f"neighbours of the cosine kNN graph (UMAP and Leiden) (default {d.n_neighbors})")
    p.add_argument("--resolution", type=float, default=d.resolution,
                   help=f"leiden: modularity resolution (default {d.resolution})")
    p.add_argument("--n-components", type=int, default=d.n_components,
                   help=f"UMAP dimensions clustered by HDBSCAN (default {d.n_components})")
    p.add_argument("--min-dist", type=float, default=d.min_dist,
                   help=f"UMAP min_dist (default {d.min_dist})")
    p.add_argument("--n-epochs", type=int, default=d.n_epochs,
                   help=f"UMAP optimisation epochs (default {d.n_epochs})")
    p.add_argument("--init", choices=("spectral", "random", "pca"), default=d.init,
                   help=f"UMAP initialisation (default {d.init})")
    p.add_argument("--min-cluster-size", type=int, default=d.min_cluster_size,
                   help=f"HDBSCAN min_cluster_size; the smallest Leiden community kept "
                        f"(default {d.min_cluster_size})")
    p.add_argument("--min-samples", type=int, default=None,
                   help="HDBSCAN min_samples (default: the min cluster size)")
    p.add_argument("--selection", choices=("eom", "leaf"), default=d.selection,
                   help=f"HDBSCAN cluster_selection_method (default {d.selection})")
    p.add_argument("--max-cluster-share", type=float, default=d.max_cluster_share,
                   help="eom: no cluster may hold more than this share of the layer's vectors "
                        f"(its sub-clusters are taken instead; 0 = no cap) (default {d.max_cluster_share})")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="hdbscan: skip the second pass that re-clusters the noise points")
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
    p.add_argument("--null", choices=NULLS, default=d.null,
                   help="the cluster gate's null: random (random groups of the cluster's size from "
                        "the layer), search (also the tightest kNN balls of that size in a "
                        "coordinate-shuffled copy of the layer) or greedy (also the best group "
                        f"grown greedily there, up to {GREEDY_POOL_LARGE} members: no chance "
                        "cluster on isotropic rows; search finds some there, in few dimensions "
                        "many) "
                        f"(default {d.null})")
    p.add_argument("--null-quantile", type=float, default=d.null_quantile,
                   help="keep a cluster when its coherence beats this quantile of the null for "
                        f"its size (0 = no cluster gate) (default {d.null_quantile})")
    p.add_argument("--member-quantile", type=float, default=d.member_quantile,
                   help="keep a member when its mean cosine to its cluster beats this quantile of "
                        f"random features' (0 = no member gate) (default {d.member_quantile})")
    p.add_argument("--null-draws", type=int, default=d.null_draws,
                   help=f"random groups per size for the cluster gate's null (default {d.null_draws})")
    p.add_argument("--stability", type=int, default=d.stability,
                   help="N extra runs with seeds seed+1..seed+N; stability_ari = their mean "
                        "adjusted Rand index to the main labels (default 0: off, NULL)")
    p.add_argument("--xy-epochs", type=int, default=d.xy_epochs,
                   help=f"epochs of the 2-D plot layout (default {d.xy_epochs})")
    p.add_argument("--silhouette-sample", type=int, default=d.silhouette_sample,
                   help="silhouette on a seeded sample of this many clustered features "
                        f"(default {d.silhouette_sample}; 0 = all)")
    add_executor_arguments(p, "layers")
    p.add_argument("--parallel", action="store_true",
                   help="multi-threaded UMAP without a seed: faster, not reproducible")


_FIELDS = tuple(f for f in ClusterConfig.__dataclass_fields__)


def config_from_args(args) -> ClusterConfig:
    cfg = ClusterConfig(**{f: getattr(args, f) for f in _FIELDS})
    checks = {"--n-components": cfg.n_components >= 1, "--n-neighbors": cfg.n_neighbors >= 2,
              "--min-dist": cfg.min_dist >= 0, "--n-epochs": cfg.n_epochs >= 1,
              "--min-cluster-size": cfg.min_cluster_size >= 2,
              "--min-samples": cfg.min_samples is None or cfg.min_samples >= 1,
              "--max-cluster-share": 0 <= cfg.max_cluster_share <= 1,
              "--resolution": cfg.resolution > 0,
              "--refine-n-neighbors": cfg.refine_n_neighbors >= 2,
              "--refine-min-dist": cfg.refine_min_dist >= 0,
              "--refine-min-cluster-size": cfg.refine_min_cluster_size >= 2,
              "--null-quantile": 0 <= cfg.null_quantile < 1,
              "--member-quantile": 0 <= cfg.member_quantile < 1,
              "--null-draws": cfg.null_draws >= 10, "--stability": cfg.stability >= 0,
              "--xy-epochs": cfg.xy_epochs >= 1, "--silhouette-sample": cfg.silhouette_sample >= 0}
    for opt, ok in checks.items():
        if not ok:
            raise BadInput(f"{opt} {getattr(args, opt[2:].replace('-', '_'))}: out of range")
    return cfg


def run(args, ctx) -> str:
    from saew.compute.options import executor_from_args
    from saew.compute.units import Units, layer_unit
    from saew.progress import progress
    from saew.storage.saes import require_release

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
                         "metric": "cosine"}, sort_keys=True)
    lines = []
    ex = executor_from_args(args, "cpu")
    if cfg.parallel:   # one multi-threaded UMAP at a time, in this process
        from saew.compute.executor import Executor, ExecutorConfig

        ex = Executor(ExecutorConfig(workers=1))
    units = Units(ctx, [layer_unit(L) for L in todo])
    todo = [L for L in todo if layer_unit(L) in units.todo]
    # layers run in this process: a big layer's null and layout go to one more process
    # (layer.side_job), on the core the seeded UMAP leaves idle
    side = ex.in_process(len(todo)) and not cfg.parallel
    jobs = ((L, str(lake.home), release, args.space, embedder, cfg, side) for L in todo)
    write = partial(write_layer, release=release, space=args.space, params=params)
    lines += [line for _, line in progress(units.map_commit(ex, _cluster_job, jobs, write),
                                           total=len(todo), desc=f"cluster {args.space}")]
    return (f"clustered release {release!r} in {args.space} space with {cfg.algorithm}"
            + (f" (embedder {embedder})" if embedder else "") + "\n"
            + "\n".join(lines + ([units.note()] if units.skipped else [])))


def write_layer(lake, unit: str, result: tuple, release: str, space: str, params: str) -> str:
    """A unit's ``clusters`` and ``cluster_quality`` rows (its layer's partitions); its line."""
    L, res, q = result
    lake.write("clusters", {
        "feature": np.arange(len(res.labels), dtype=np.int32), "cluster": res.labels,
        "probability": _nullable(res.probability), "x": _nullable(res.xy[:, 0]),
        "y": _nullable(res.xy[:, 1])}, release=release, layer=int(L), space=space)
    lake.write("cluster_quality", {k: [v] for k, v in {**q, "params": params}.items()},
               release=release, layer=int(L), space=space)
    return (f"layer {L}: {q['n_clusters']} clusters, noise {q['noise_frac'] or 0:.1%}, "
            f"largest {q['largest_share']:.1%}"
            + ("" if q["has_structure"] is not False else " (no structure beyond the null)"))


def _cluster_job(L: int, home: str, release: str, space: str, embedder: str | None,
                 cfg: ClusterConfig, side: bool = False):
    """One unit: layer ``L`` of the lake at ``home`` clustered; its vectors are read here (in
    this process, a worker process or a Ray task), so the driver ships only names."""
    from saew.storage.lake import Lake

    vec, has = layer_vectors(Lake(home), release, L, space, embedder)
    res = cluster_layer(vec, has, cfg, side)
    return L, res, quality(vec, res, cfg)


def _nullable(a: np.ndarray):
    import pyarrow as pa

    a = np.asarray(a, np.float32)
    return pa.array(a, type=pa.float32(), mask=~np.isfinite(a))
