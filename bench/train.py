"""Benchmark SAE training: per-layer quality and time, and the sparse TopK step vs autograd.

    .venv/bin/python bench/train.py [--model minilm] [--tokens 20000] [--layers all]

Prints, per layer, fvu / L0 / dead fraction / seconds of the default TopK config, then the
cost of one hand-gradient sparse TopK step as a RATIO to a dense autograd TopK step of the
same shapes measured in the same run, and the peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")


def dense_topk_step(s, x, k: int) -> None:
    import torch

    params = [t.detach().clone().requires_grad_() for t in (s.w_enc, s.b_enc, s.w_dec, s.b_dec)]
    w_enc, b_enc, w_dec, b_dec = params
    pre = (x - b_dec) @ w_enc.t() + b_enc
    v, i = pre.topk(k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, v.clamp_min(0))
    ((f @ w_dec + b_dec - x).pow(2).sum() / x.shape[0]).backward()


def timed(fn, n: int = 5) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--layers", default="all")
    a = ap.parse_args()

    import torch

    from saew.compute.corpus import load_corpus
    from saew.compute.lm.load import load_model
    from saew.compute.lm.model import residuals
    from saew.compute.training.config import TrainConfig
    from saew.compute.training.model import TrainingSAE, topk_step
    from saew.compute.training.step import EXPANSION, parse_layers
    from saew.compute.training.trainer import train_sae

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model = load_model(a.model)
    layers = parse_layers(a.layers, model.spec.n_layers)
    acts = residuals(model, load_corpus("builtin", 0), a.tokens, layers)
    print(f"{a.model}: residuals of {len(layers)} layers x {a.tokens} tokens in {time.perf_counter() - t0:.1f}s")
    cfg = TrainConfig(d_sae=EXPANSION * model.spec.d_model)
    total = 0.0
    print("layer    fvu     l0  dead_frac  seconds")
    for L in layers:
        r = train_sae(acts[L], cfg)
        total += r.seconds
        f = r.final
        print(f"{L:5d}  {f['fvu']:.3f}  {f['l0']:5.1f}  {f['dead_frac']:9.3f}  {r.seconds:7.1f}", flush=True)
    print(f"training total {total:.1f}s ({total / len(layers):.1f}s per layer)")

    x = acts[layers[0]][: cfg.batch_size].contiguous()
    s = TrainingSAE(x, x.mean(0), cfg, torch.Generator().manual_seed(0))
    w = torch.ones(x.shape[0])
    dead = torch.zeros(cfg.d_sae, dtype=torch.bool)
    with torch.no_grad():
        sparse = timed(lambda: topk_step(s, x, w, cfg, dead))
    dense = timed(lambda: dense_topk_step(s, x, cfg.k))
    print(f"one TopK step (batch {cfg.batch_size}, d_sae {cfg.d_sae}): sparse hand gradients = "
          f"{sparse / dense:.2f} x dense autograd")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
