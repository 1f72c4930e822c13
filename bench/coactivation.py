"""Benchmark ``saew coactivation`` (and ``saew correlate``) against scipy's plain A^T A.

    .venv/bin/python bench/coactivation.py [--tokens 600000] [--k 32] [--d-sae 32768]
                                           [--dist zipf|uniform] [--correlate] [--shard-tokens S]
                                           [--layers 2] [--executors local] [--workers 2]

Builds one synthetic release (two layers with --correlate) of ``--tokens`` tokens with ``--k``
active features each (drawn without repetition per token, from a Zipf-like frequency law
p_f ~ 1/(f+1)^0.6 or uniformly; values ~ Exp(1) + 0.1) in a temporary warehouse, then, each in
its own subprocess so peak memories are separate:

* ``saew coactivation`` end to end (read the activations partition, count, write the Parquet
  partition), wall time and peak RSS;
* the baseline: scipy ``A.T @ A`` (CSR, int32 data) on the same matrix, plus ``triu(., 1)``;
* with ``--correlate``: ``saew correlate`` over the ``--layers`` layers (default 2: one pair;
  each adjacent pair is a unit), once per ``--executors`` mode: ``local`` is ``--executor local
  --workers 1`` (the pairs one after another in this process, the kernels on every core),
  ``ray`` is ``--executor ray --workers N`` (a local Ray cluster started by the command, its
  start-up included, each task single-threaded).

Figures are printed as ratios to the baseline measured in the same run, plus peak memory.
The JIT is warmed on a tiny release first (numba caches compiled kernels on disk). The
synthetic release is built in its own process: a child's peak RSS (ru_maxrss) starts from its
parent's at the fork, so building it in the bench process inflated every child's figure (the
"2.01 GB at 1M tokens" of an earlier README line was that, not the steps).

Scale, memory flat and time linear in the corpus (2026-12-02, load average 8-12 from other jobs,
``nice -n 19``; CPU seconds are the figure to compare, wall times are the contention's):

    bench/coactivation.py --tokens N --d-sae 4096 --k 32 --correlate --shard-tokens 250000 --no-baseline
       tokens   step           wall s   cpu s   peak GB   pairs
       250000   coactivation     28.1     7.7     0.79    3,351,158
       250000   correlate        37.7     9.5     1.14       47,280 rows
      1000000   coactivation     84.7    26.0     0.85    3,711,193    (4 shards)
      1000000   correlate       575.1    42.8     1.28       48,288 rows

4x the tokens: coactivation 3.4x the CPU, +8% peak; correlate 4.5x the CPU (each non-final block
also runs the symbolic pass that sizes its rebuilt rows), +12% peak. Memory is one shard's
activations and incidence plus the running pairs (16 bytes each), which are bounded by the
feature space but grow with the corpus until they saturate: with 32,768 features, 250k tokens
have 61M co-activation pairs and 1M tokens 127M (1 GB and 2 GB of counts), so there the peak
follows the result's size, not the shard's.

Executors for correlate at the GPT-2-v5-32k shape (2026-12-04, idle):

    bench/coactivation.py --tokens 250000 --d-sae 32768 --correlate --layers 12 --executors local,ray --no-baseline
       saew correlate (local)   wall 57.0 s  cpu 87.9 s  peak 1.37 GB   11 pairs, 3,918,528 rows
       saew correlate (ray)     wall 76.1 s  (the tasks' CPU is not counted)   0.75x

The serial run keeps 1.54 of the 2 cores busy (numba and BLAS threads), so no second worker can
make it more than 2 / 1.54 = 1.30x faster here; Ray's tasks also rebuilt each pair's source
(the serial run reuses the previous pair's destination) and the command pays Ray's start-up.
With the pairs in one chain per worker (a pair's destination reused as the next source) and the
workers warmed while the step plans (2026-12-04, idle, one run):

       saew correlate (local)   wall 60.3 s  cpu 88.5 s  peak 1.31 GB
       saew correlate (ray)     wall 69.2 s                              0.87x

A single-threaded worker spends about 10 CPU-s a pair where the serial run's threads spend 8.
Peak memory with Ray is the saew process's only (its workers are the raylet's children).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synth(tokens: int, k: int, d: int, dist: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token_id int64, feature int32, value float32): k distinct active features per token."""
    rng = np.random.default_rng(seed)
    if dist == "uniform":
        p = None
    else:
        p = 1.0 / np.arange(1, d + 1) ** 0.6
        p = rng.permutation(p / p.sum())
    feats = np.empty((tokens, k), np.int64)
    step = 50_000
    for s in range(0, tokens, step):
        n = min(step, tokens - s)
        f = rng.choice(d, size=(n, 2 * k), p=p)
        f.sort(axis=1)
        dup = np.zeros_like(f, bool)
        dup[:, 1:] = f[:, 1:] == f[:, :-1]
        f = np.where(dup, d + 1, f)          # push repeats to the end, keep the first k distinct
        f.sort(axis=1)
        feats[s:s + n] = f[:, :k]
    tok = np.repeat(np.arange(tokens, dtype=np.int64), k)
    feat = feats.ravel()
    keep = feat < d
    val = (rng.exponential(1.0, feat.size) + 0.1).astype(np.float32)
    return tok[keep], feat[keep].astype(np.int32), val[keep]


def build_home(home: Path, tokens: int, k: int, d: int, dist: str, layers: int, release: str,
               shard_tokens: int | None = None) -> None:
    from tests.factories import make_sae, put_sae
    from saew.storage import catalog
    from saew.storage.lake import Lake

    lake = Lake(home)
    for layer in range(layers):
        put_sae(lake, release, layer, make_sae(d_in=4, d_sae=d, seed=layer))
        tok, feat, val = synth(tokens, k, d, dist, seed=100 + layer)
        with lake.transaction():
            step = shard_tokens or tokens
            for s in range(0, tokens, step):   # token shards, as `saew harvest --shard-tokens` writes them
                a, b = np.searchsorted(tok, [s, s + step])
                lake.write("activations", {"token_id": tok[a:b], "feature": feat[a:b], "value": val[a:b]},
                           release=release, layer=layer, shard=s // step)
            lake.write("activation_sets", {"n_tokens": [tokens], "source": ["bench"], "run_id": ["bench"]},
                       release=release, layer=layer)
    catalog.refresh(lake)


def child(code: list[str]) -> tuple[float, float, str, float]:
    """Run a command in a fresh process: (wall s, its own peak RSS GB, stdout, CPU s user+sys)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(code, cwd=ROOT, stdout=out, stderr=err,
                             env={**os.environ, "SAEW_PROGRESS": "0"})
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if p.returncode != 0:
            raise SystemExit(f"{code}: exit {p.returncode}\n{err.read()}")
        return wall, usage.ru_maxrss / 1e6, out.read().strip(), usage.ru_utime + usage.ru_stime


BASELINE = r"""
import sys, time, json, resource
import numpy as np, scipy.sparse as sp
from saew.storage.lake import Lake
home, release = sys.argv[1], sys.argv[2]
t = Lake(home).query("SELECT token_id, feature FROM activations WHERE release = ? AND layer = 0 AND value > 0", [release])
tok = t.column("token_id").to_numpy(); feat = t.column("feature").to_numpy()
n, d = int(tok.max()) + 1, int(sys.argv[3])
t0 = time.perf_counter(); c0 = time.process_time()
a = sp.csr_matrix((np.ones(tok.size, np.int32), (tok, feat)), shape=(n, d))
c = (a.T @ a)
up = sp.triu(c, 1)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "cpu": time.process_time() - c0, "pairs": int(up.nnz)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=600_000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--d-sae", type=int, default=32_768)
    ap.add_argument("--dist", choices=["zipf", "uniform"], default="zipf")
    ap.add_argument("--correlate", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--shard-tokens", type=int, default=None,
                    help="write the activations in token shards of this size (default: one)")
    ap.add_argument("--build-home", default=None, help=argparse.SUPPRESS)   # internal: build and exit
    ap.add_argument("--release", default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=None,
                    help="layers of the synthetic release (default 1; 2 with --correlate)")
    ap.add_argument("--executors", default="local",
                    help="comma-separated correlate modes: local (--workers 1), ray (--workers N)")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers for --executors ray")
    a = ap.parse_args()
    a.layers = a.layers or (2 if a.correlate else 1)
    modes = {"local": ["--executor", "local", "--workers", "1"],
             "ray": ["--executor", "ray", "--workers", str(a.workers)]}
    bad = [m for m in a.executors.split(",") if m not in modes]
    if bad:
        ap.error(f"--executors: unknown mode {bad[0]!r} (local, ray)")
    if a.build_home:
        build_home(Path(a.build_home), a.tokens, a.k, a.d_sae, a.dist, a.layers, a.release, a.shard_tokens)
        return
    py = str(ROOT / ".venv" / "bin" / "python")

    def build(home: Path, tokens: int, k: int, d: int, layers: int, release: str, shards: int | None):
        # in its own process: a child's peak RSS (ru_maxrss) starts from its parent's at the
        # fork, so a bench process that held the synthetic release would inflate every figure
        cmd = [py, __file__, "--build-home", str(home), "--tokens", str(tokens), "--k", str(k),
               "--d-sae", str(d), "--dist", a.dist, "--layers", str(layers), "--release", release]
        subprocess.run(cmd + (["--shard-tokens", str(shards)] if shards else []), check=True)

    with tempfile.TemporaryDirectory(prefix="saew-bench-") as tmp:
        home = Path(tmp) / "home"
        build(home, 500, 4, 64, 2, "warm", None)
        for step in ("coactivation", "correlate"):
            child([py, "-m", "saew", step, "--release", "warm", "--home", str(home)])
        t0 = time.perf_counter()
        build(home, a.tokens, a.k, a.d_sae, a.layers, "bench", a.shard_tokens)
        print(f"setup: {time.perf_counter() - t0:.1f}s ({a.layers} layers x {a.tokens} tokens x {a.k} "
              f"active x {a.d_sae} features, {a.dist}, shards of {a.shard_tokens or a.tokens} tokens)")
        res: dict[str, dict] = {}
        if not a.no_baseline:
            wall, peak, out, cpu = child([py, "-c", BASELINE, str(home), "bench", str(a.d_sae)])
            info = json.loads(out)
            res["scipy A^T A + triu"] = {"seconds": info["seconds"], "peak_gb": peak,
                                         "pairs": info["pairs"], "cpu": info["cpu"]}
        cmd = [py, "-m", "saew", "coactivation", "--release", "bench", "--layer", "0",
               "--home", str(home)]
        wall, peak, out, cpu = child(cmd)
        res["saew coactivation (end to end)"] = {"seconds": wall, "peak_gb": peak, "out": out, "cpu": cpu}
        for mode in a.executors.split(",") if a.correlate else []:
            wall, peak, out, cpu = child([py, "-m", "saew", "correlate", "--release", "bench",
                                          "--home", str(home), *modes[mode]])
            res[f"saew correlate ({mode})"] = {"seconds": wall, "peak_gb": peak, "out": out, "cpu": cpu}
        if {"saew correlate (local)", "saew correlate (ray)"} <= res.keys():
            print(f"correlate, local --workers 1 / ray --workers {a.workers}: "
                  f"{res['saew correlate (local)']['seconds'] / res['saew correlate (ray)']['seconds']:.2f}x")
        base = res.get("scipy A^T A + triu", {})
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times inflate "
              f"with contention; CPU seconds do not)")
        for name, r in res.items():
            ratio = (f"{r['seconds'] / base['seconds']:.2f}x / {r['cpu'] / base['cpu']:.2f}x"
                     if base else "-")
            print(f"{name:32s} wall {r['seconds']:6.1f}s  cpu {r['cpu']:6.1f}s  "
                  f"(wall/cpu vs baseline {ratio})  peak {r['peak_gb']:.2f} GB  "
                  f"{r.get('out') or r.get('pairs')}")


if __name__ == "__main__":
    main()
