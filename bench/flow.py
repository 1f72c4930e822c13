"""Benchmark: ``saew flow`` on one destination layer at 32k features per module (synthetic).

    .venv/bin/python bench/flow.py [--features 32768] [--d-in 768] [--top-k 5] [--threads 2]

One residual layer l' of ``--features`` features and three source SAEs of the same width
(the residual layer before, the block's MLP-out and attention-out SAEs; GPT-2 small v5-32k
shape by default), synthetic: half of the destination rows are noisy copies of source rows, so
the planted predecessors are checked too. Each part runs in a fresh process (``--part``), so
its peak memory (ru_maxrss) is its own:

* ``gemm``: one float32 GEMM of the same size, dst [F, d] @ src[F, d]^T -> the full F x F
  cosine matrix in memory (what a one-shot product of one module costs);
* ``module``: ``top_predecessors`` of one module (blocked products + torch.topk per block);
* ``layer``: ``flow_layer`` of a whole layer (three modules) and its flow_links columns.

Prints seconds and peak memory of each and their ratios to the GEMM measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODULES = ("resid", "mlp_out", "attn_out")


def synthetic(f: int, d: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(dst [f, d], {module: src [f, d]}, planted source of each dst row as module * f + index,
    -1 for a fresh row)."""
    rng = np.random.default_rng(seed)
    src = {m: rng.standard_normal((f, d), dtype=np.float32) for m in MODULES}
    dst = rng.standard_normal((f, d), dtype=np.float32)
    half = rng.permutation(f)[: f // 2]
    mod = rng.integers(0, len(MODULES), half.size)
    idx = rng.integers(0, f, half.size)
    planted = np.full(f, -1, np.int64)
    for k, m in enumerate(MODULES):            # three vectorised copies, one per module
        rows = half[mod == k]
        w = src[m][idx[mod == k]]
        dst[rows] = w / np.linalg.norm(w, axis=1, keepdims=True) * np.sqrt(d) \
            + 0.1 * rng.standard_normal((rows.size, d), dtype=np.float32)
        planted[rows] = k * f + idx[mod == k]
    return dst, src, planted


def part(name: str, f: int, d: int, k: int, threads: int) -> dict:
    import torch

    from saew.compute.flow.links import top_predecessors, unit_rows
    from saew.compute.flow.step import flow_layer

    torch.set_num_threads(threads)
    dst, src, planted = synthetic(f, d)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    out: dict = {}
    if name == "gemm":
        a, b = unit_rows(dst), unit_rows(src["resid"])
        t0 = time.perf_counter()
        c = a @ b.T
        out["checksum"] = float(c[0, 0])
    elif name == "module":
        idx, cos = top_predecessors(dst, src["resid"], k)
        rows = np.flatnonzero((planted >= 0) & (planted < f))
        out["planted_recovered"] = float((idx[rows, 0] == planted[rows]).mean())
    else:
        cols = flow_layer(dst, src, k)
        top = (cols["rank"] == 1)
        best = np.full(f, -np.inf)
        arg = np.full(f, -1, np.int64)
        for m in range(len(MODULES)):     # three modules: the best rank-1 over them per row
            sel = top & (cols["module"] == m)
            cand = cols["cosine"][sel]
            better = cand > best
            arg[better] = m * f + cols["src_feature"][sel][better]
            best = np.maximum(best, cand)
        rows = np.flatnonzero(planted >= 0)
        out["planted_recovered"] = float((arg[rows] == planted[rows]).mean())
        out["rows"] = int(cols["rank"].size)
    out["seconds"] = time.perf_counter() - t0
    out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["inputs_gb"] = rss0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=32768)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--part", choices=["gemm", "module", "layer"], default=None,
                    help="run one part in this process and print it as JSON (used by the driver)")
    a = ap.parse_args()
    if a.part:
        print(json.dumps(part(a.part, a.features, a.d_in, a.top_k, a.threads)))
        return
    res = {}
    for name in ("gemm", "module", "layer"):
        r = subprocess.run([sys.executable, __file__, "--part", name, "--features", str(a.features),
                            "--d-in", str(a.d_in), "--top-k", str(a.top_k), "--threads", str(a.threads)],
                           capture_output=True, text=True, check=True)
        res[name] = json.loads(r.stdout.strip().splitlines()[-1])
    g = res["gemm"]
    print(f"shape: {a.features} features per module, d_in {a.d_in}, top-{a.top_k}, {a.threads} threads")
    print(f"one float32 GEMM ({a.features} x {a.features} cosines in memory): {g['seconds']:.2f} s, "
          f"peak {g['peak_gb']:.2f} GB (inputs {g['inputs_gb']:.2f} GB)")
    for name, label in (("module", "one module (blocked top-k)"), ("layer", "a layer, 3 modules")):
        r = res[name]
        print(f"{label}: {r['seconds']:.2f} s = {r['seconds'] / g['seconds']:.2f} x GEMM; peak "
              f"{r['peak_gb']:.2f} GB = {r['peak_gb'] / g['peak_gb']:.2f} x GEMM's; above inputs "
              f"{r['peak_gb'] - r['inputs_gb']:.2f} GB vs {g['peak_gb'] - g['inputs_gb']:.2f} GB; "
              f"planted recovered {r['planted_recovered']:.4f}")


if __name__ == "__main__":
    main()
