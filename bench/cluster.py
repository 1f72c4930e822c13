"""Benchmark: clustering one layer and OT between two layers' clusters (issues 5 and 14).

    .venv/bin/python bench/cluster.py [--n 32768] [--d 768] [--clusters 2000] [--skip-baseline]
    .venv/bin/python bench/cluster.py --home DIR --release R [--layers 0,9] [--spaces decoder,text]
        [--configs hdbscan leiden ...]      # per-layer quality on a warehouse (read only)

Data: ``n`` unit vectors of width ``d``: two thirds around 600 planted directions, one third
uniformly random (like SAE decoder rows: many loose groups plus unstructured features).

Reported, all in this one process:
- cold: a first ``cluster_vectors`` call on 500 points plus a small NN-descent (numba
  compilation, paid once per process);
- ours: ``saew.compute.clustering.layer.cluster_layer`` with the default ClusterConfig (UMAP
  15-D, HDBSCAN with the size cap, the evidence gates, noise refinement, 2-D plot layout,
  seeded) on the full layer, warm, as ``saew cluster`` runs a layer in its own process: the
  gates' null and the 2-D layout in one more process (``layer.side_job``) while UMAP + HDBSCAN
  run; then the same all in one process (the labels must be identical); the gates' nulls
  alone (``gates.coherence_null``);
- leiden: the same with ``algorithm="leiden"`` (kNN graph, Leiden, gates, 2-D layout);
- baseline: a plain ``umap.UMAP(15-D, cosine, seeded).fit_transform`` + ``hdbscan.HDBSCAN``
  on the same data (no refinement, no 2-D layout), warm;
- OT: ``compute.transport.solve`` between ~``clusters`` x ``clusters`` buckets (emd and
  sinkhorn), against a bare ``ot.emd`` call on the same cost as the baseline.
Figures are wall and CPU seconds and ratios to the baseline (the machine is shared: CPU
seconds are the stable figure); peak RSS from resource.getrusage.

With ``--home``: for each layer and space of a warehouse, the stored clusters (``stored``,
whatever produced them) and those of each configuration (``bench/planted.py`` syntax:
``hdbscan``, ``leiden``, ``name:key=value,...``), computed in this process and not written:
clusters, largest share (noise included), noise share, has_structure, silhouette vs its
shuffled-label null, coherence vs its null.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((600, d)).astype(np.float32)
    x = centres[rng.integers(0, 600, n)] + 0.9 * rng.standard_normal((n, d)).astype(np.float32)
    x[: n // 3] = rng.standard_normal((n // 3, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--home", default=None)
    ap.add_argument("--release", default=None)
    ap.add_argument("--layers", default=None)
    ap.add_argument("--spaces", default="decoder,text")
    ap.add_argument("--configs", nargs="+", default=["hdbscan", "leiden"])
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from saew.compute.clustering.config import ClusterConfig
    from saew.compute.clustering.gates import coherence_null
    from saew.compute.clustering.layer import cluster_layer, cluster_vectors
    from saew.compute.clustering.transport import buckets, cost_matrix, solve

    if a.home:
        return warehouse(a)

    x = data(a.n, a.d, 0)
    cfg = ClusterConfig()
    t = time.perf_counter()
    cluster_vectors(data(500, a.d, 1), cfg)
    from pynndescent import NNDescent

    NNDescent(data(600, a.d, 1), n_neighbors=10, metric="cosine", random_state=0, n_jobs=1,
              low_memory=True, compressed=True).neighbor_graph
    cold = time.perf_counter() - t
    print(f"cold start (imports + numba compile, once per process): {cold:.1f}s")

    side = True   # as `saew cluster` runs a layer in its own process
    t, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
    res = cluster_layer(x, np.ones(a.n, bool), cfg, side)
    ours, ours_cpu = time.perf_counter() - t, time.process_time() - c0 + children_cpu() - k0
    k = len(np.unique(res.labels[res.labels >= 0]))
    print(f"ours: {a.n}x{a.d} layer clustered in {ours:.1f}s wall, {ours_cpu:.1f}s CPU with the side "
          f"process's ({k} clusters, noise {(res.labels == -1).mean():.1%}); peak RSS {peak_mb():.0f} MB")
    t = time.perf_counter()
    inline = cluster_layer(x, np.ones(a.n, bool), cfg)
    print(f"  the same in one process (no side process): {time.perf_counter() - t:.1f}s wall; "
          f"labels identical: {bool(np.array_equal(inline.labels, res.labels))}")
    t, c0 = time.perf_counter(), time.process_time()
    coherence_null(x, cfg.null_quantile, cfg.null_draws, cfg.seed, cfg.null)
    print(f"  of which the gates' nulls: {time.perf_counter() - t:.1f}s wall, {time.process_time() - c0:.1f}s CPU")
    t, c0 = time.perf_counter(), time.process_time()
    lres = cluster_layer(x, np.ones(a.n, bool), ClusterConfig(algorithm="leiden"), side)
    lei, lei_cpu = time.perf_counter() - t, time.process_time() - c0
    print(f"leiden: {lei:.1f}s wall, {lei_cpu:.1f}s CPU ({len(np.unique(lres.labels[lres.labels >= 0]))} "
          f"clusters, noise {(lres.labels == -1).mean():.1%})")

    if not a.skip_baseline:
        import hdbscan
        import umap

        t, c0 = time.perf_counter(), time.process_time()
        e = umap.UMAP(n_components=15, n_neighbors=20, min_dist=0.1, metric="cosine",
                      random_state=0).fit_transform(x)
        hl = hdbscan.HDBSCAN(min_cluster_size=8, cluster_selection_method="eom").fit_predict(e)
        base, base_cpu = time.perf_counter() - t, time.process_time() - c0
        print(f"baseline (plain umap + hdbscan): {base:.1f}s wall, {base_cpu:.1f}s CPU "
              f"({hl.max() + 1} clusters); ours / baseline = {ours / base:.2f} wall, "
              f"{ours_cpu / base_cpu:.2f} CPU; leiden / baseline = {lei / base:.2f} wall, "
              f"{lei_cpu / base_cpu:.2f} CPU")
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores shared)")

    # OT between ~clusters x clusters buckets of two layers
    rng = np.random.default_rng(2)
    la = rng.integers(-1, a.clusters, a.n)
    lb = rng.integers(-1, a.clusters, a.n)
    ua, ub = data(a.n, a.d, 3).astype(np.float64), data(a.n, a.d, 4).astype(np.float64)
    ba, bb = buckets(la, ua), buckets(lb, ub)
    import ot

    c = cost_matrix(ba, bb)
    t = time.perf_counter()
    ot.emd(ba.sizes / ba.n, bb.sizes / bb.n, c, numItermax=max(100_000, 50 * c.size))
    bare = time.perf_counter() - t
    t = time.perf_counter()
    p = solve(ba, bb, "emd")
    emd = time.perf_counter() - t
    t = time.perf_counter()
    solve(ba, bb, "sinkhorn")
    sk = time.perf_counter() - t
    print(f"OT {len(ba.ids)}x{len(bb.ids)} buckets: emd {emd:.2f}s (bare ot.emd {bare:.2f}s, "
          f"ratio {emd / bare:.2f}), sinkhorn {sk:.2f}s; {len(p.mass)} stored flows; "
          f"peak RSS {peak_mb():.0f} MB")


def warehouse(a) -> None:
    """Per-layer quality of stored and recomputed clusters on a warehouse (nothing written)."""
    from planted import parse_config

    from saew.compute.clustering.config import ClusterConfig
    from saew.compute.clustering.layer import cluster_layer
    from saew.compute.clustering.quality import layer_quality
    from saew.compute.clustering.step import layer_vectors
    from saew.storage.lake import Lake
    from saew.storage.reads import pick_embedder
    from saew.storage.saes import layers as release_layers

    lake = Lake(Path(a.home))
    layers = [int(x) for x in a.layers.split(",")] if a.layers else release_layers(lake, a.release)
    configs = [parse_config(c, ClusterConfig()) for c in a.configs]
    print("per layer: clusters / largest share / noise / has_structure / silhouette (null) / coherence (null)")
    for space in a.spaces.split(","):
        emb = pick_embedder(lake, a.release, None) if space == "text" else None
        for L in layers:
            vec, has = layer_vectors(lake, a.release, L, space, emb)
            stored = lake.query("SELECT cluster FROM clusters WHERE release = ? AND layer = ? AND "
                                "space = ? ORDER BY feature", [a.release, L, space]).column(0).to_numpy()
            rows = [("stored", stored, False)] if len(stored) else []
            rows += [(name, cluster_layer(vec, has, cfg).labels, True) for name, cfg in configs]
            for name, lab, gated in rows:
                q = layer_quality(vec, lab, 4000, 0, None, gated)
                f = lambda v: "NULL" if v is None else f"{v:.2f}"   # noqa: E731
                print(f"{space:7s} L{L:<3d} {name:10s} {q['n_clusters']:4d} {q['largest_share']:.2f} "
                      f"{q['noise_frac']:.2f} {str(q['has_structure']):5s} {f(q['silhouette'])} "
                      f"({f(q['silhouette_null'])}) {f(q['coherence'])} ({f(q['coherence_null'])})",
                      flush=True)


if __name__ == "__main__":
    main()
