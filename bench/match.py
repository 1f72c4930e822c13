"""Benchmark: SAE Match on one layer pair of the GPT-2 small v5-32k shape (32,768 x d_in 768).

    .venv/bin/python bench/match.py [--features 32768] [--d-in 768] [--solver sparse]
                                    [--screen auto|float32|bfloat16] [--k 128] [--check]

Synthetic but structured weights (no downloads): decoder rows drawn around 1,024 cluster
centres (so every feature has close competitors), layer l+1 = a random permutation of 75% of
layer l's features, perturbed, plus 25% new ones; encoders = decoder directions + noise.
Reports the time of one pair (``saew.compute.matching.step.match_pair``: folding, screening GEMMs, exact
certified assignment, float64 costs and cosines) as a RATIO to one GEMM pass computing the
full folded distance matrix of the same parameters in the same run (chunked float32 addmm,
what any float32 method that looks at every pair pays; a bfloat16 screen, with its rounding
bound carried into the certificate, can go below it), plus peak memory (ru_maxrss); with
--check, compares the total with scipy's dense solver (for sizes that fit in memory).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saew.sae.params import SAEParams  # noqa: E402


def synthetic_pair(f: int, d: int, seed: int = 0, keep: float = 0.75, n_centres: int = 1024,
                   spread: float = 1.0, drift: float = 0.5) -> tuple[SAEParams, SAEParams]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(nf: int) -> np.ndarray:
        w = centres[rng.integers(0, n_centres, nf)] + spread * rng.standard_normal((nf, d)).astype(np.float32) / np.sqrt(d)
        return w / np.linalg.norm(w, axis=1, keepdims=True)

    def sae(w_dec: np.ndarray) -> SAEParams:
        nf = w_dec.shape[0]
        w_enc = (w_dec + 0.3 * rng.standard_normal((nf, d)).astype(np.float32) / np.sqrt(d)).T
        return SAEParams(w_enc=np.ascontiguousarray(w_enc, dtype=np.float32),
                         b_enc=(-0.1 + 0.02 * rng.standard_normal(nf)).astype(np.float32),
                         w_dec=w_dec.astype(np.float32), b_dec=np.zeros(d, np.float32),
                         architecture="topk", k=32)

    w0 = draw(f)
    n_keep = int(keep * f)
    perm = rng.permutation(f)
    w1 = draw(f)
    moved = w0[perm[:n_keep]] + drift * rng.standard_normal((n_keep, d)).astype(np.float32) / np.sqrt(d)
    w1[:n_keep] = moved / np.linalg.norm(moved, axis=1, keepdims=True)
    w1 = w1[rng.permutation(f)]
    return sae(w0), sae(w1)


def gemm_baseline(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> float:
    """One pass computing every entry of the squared-distance matrix (chunked float32 GEMM)."""
    import torch

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    na, nb = (ta * ta).sum(1), (tb * tb).sum(1)
    t0 = time.perf_counter()
    for r0 in range(0, len(a), chunk):
        blk = torch.addmm(nb[None, :], ta[r0:r0 + chunk], tb.T, alpha=-2.0)
        blk += na[r0:r0 + chunk, None]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=32768)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--solver", default="sparse", choices=["auto", "sparse", "exact"])
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--screen", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="precision of the screening GEMM (default auto: bfloat16 on CPUs with "
                         "native bf16); the result is exact either way")
    ap.add_argument("--check", action="store_true", help="compare with scipy's dense solver")
    args = ap.parse_args()

    from saew.compute.matching.costs import SqEuclidCosts, resolve_screen
    from saew.compute.matching.solver import SolverConfig, solve
    from saew.compute.matching.step import match_pair
    from saew.sae.costs import match_vectors

    src, dst = synthetic_pair(args.features, args.d_in)
    a, b = match_vectors(src, "folded"), match_vectors(dst, "folded")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    solve(np.random.default_rng(0).random((300, 300)), "sparse")  # numba warm-up (cached JIT)
    t_gemm = gemm_baseline(a, b)
    cfg = SolverConfig(screen=args.screen, **({} if args.k is None else {"k": args.k}))
    t0 = time.perf_counter()
    res = match_pair(src, dst, "folded", args.solver, seed=0, cfg=cfg)
    t_pair = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"shape: {args.features} x {args.features} features, d_in {args.d_in} "
          f"(folded vectors of width {a.shape[1]})")
    print(f"one GEMM pass (full distance matrix): {t_gemm:.2f} s")
    print(f"match pair ({args.solver}, {resolve_screen(args.screen)} screen): {t_pair:.2f} s  ->  ratio {t_pair / t_gemm:.2f} x GEMM")
    print(f"solver stats: {res.stats}")
    print(f"peak memory (ru_maxrss): {rss:.2f} GB (inputs loaded: {rss0:.2f} GB)")
    if args.check:
        ref = solve(SqEuclidCosts(a, b), "exact")
        rel = abs(ref.total - res.total) / max(1e-300, abs(ref.total))
        print(f"exactness vs scipy dense: total {res.total:.9g} vs {ref.total:.9g} (rel diff {rel:.2e})")


if __name__ == "__main__":
    main()
