"""Benchmark: clustering one layer and OT between two layers' clusters (issue 5).

    .venv/bin/python bench/cluster.py [--n 32768] [--d 768] [--clusters 2000] [--skip-baseline]

Data: ``n`` unit vectors of width ``d``: two thirds around 600 planted directions, one third
uniformly random (like SAE decoder rows: many loose groups plus unstructured features).

Reported, all in this one process:
- cold: a first ``cluster_vectors`` call on 500 points plus a small NN-descent (numba
  compilation, paid once per process);
- ours: ``saew.compute.clustering.step.cluster_layer`` with the default ClusterConfig (UMAP 15-D, HDBSCAN,
  noise refinement, 2-D plot layout, seeded) on the full layer, warm;
- baseline: a plain ``umap.UMAP(15-D, cosine, seeded).fit_transform`` + ``hdbscan.HDBSCAN``
  on the same data (no refinement, no 2-D layout), warm;
- OT: ``compute.transport.solve`` between ~``clusters`` x ``clusters`` buckets (emd and
  sinkhorn), against a bare ``ot.emd`` call on the same cost as the baseline.
Figures are wall and CPU seconds and ratios to the baseline (the machine is shared: CPU
seconds are the stable figure); peak RSS from resource.getrusage.
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


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--skip-baseline", action="store_true")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from saew.compute.clustering.step import ClusterConfig, cluster_layer, cluster_vectors
    from saew.compute.clustering.transport import buckets, cost_matrix, solve

    x = data(a.n, a.d, 0)
    cfg = ClusterConfig()
    t = time.perf_counter()
    cluster_vectors(data(500, a.d, 1), cfg)
    from pynndescent import NNDescent

    NNDescent(data(600, a.d, 1), n_neighbors=10, metric="cosine", random_state=0, n_jobs=1,
              low_memory=True, compressed=True).neighbor_graph
    cold = time.perf_counter() - t
    print(f"cold start (imports + numba compile, once per process): {cold:.1f}s")

    t, c0 = time.perf_counter(), time.process_time()
    res = cluster_layer(x, np.ones(a.n, bool), cfg)
    ours, ours_cpu = time.perf_counter() - t, time.process_time() - c0
    k = len(np.unique(res.labels[res.labels >= 0]))
    print(f"ours: {a.n}x{a.d} layer clustered in {ours:.1f}s wall, {ours_cpu:.1f}s CPU ({k} clusters, noise "
          f"{(res.labels == -1).mean():.1%}); peak RSS {peak_mb():.0f} MB")

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
              f"{ours_cpu / base_cpu:.2f} CPU")
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


if __name__ == "__main__":
    main()
