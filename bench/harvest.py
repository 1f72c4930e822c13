"""Harvest on minilm: throughput against a bare forward pass, and memory / time against corpus size.

    .venv/bin/python bench/harvest.py [--tokens 8000] [--d-sae 4096] [--k 32] [--layers 6] [--repeat 3]
    .venv/bin/python bench/harvest.py --scale 250000,1000000 [--shard-tokens 250000]

Throughput (default): in one process, over the same corpus prefix,

* ``plain forward 8 x 128``: the minilm module on full 8 x 128 batches of real tokens (no
  padding, no hooks): the machine's ceiling for this model;
* ``bare forward``: the module over exactly the batches harvest feeds it (the same sequences,
  lengths and padding, all blocks, no capture);
* ``SAE encodes alone``: the sparse codes of every layer's SAE (``codes.sparse_codes``, as
  harvest computes them) over the same batches' residuals, captured beforehand; ``forward +
  encodes`` is then harvest's ceiling if everything else (capture, examples, writes) were free;
* ``saew harvest``: the command end to end (capture, SAE encode, sparse codes, examples,
  Parquet writes, commits), as a ratio to the bare forward measured just before it (target >=
  0.8): at ``--tokens`` N all included, and in steady state, 2N / (t(3N) - t(N)), without the
  fixed costs (imports, model and SAE loading, per-layer metadata). This VM's speed drifts (the
  bare forward varied 2,500-4,000 tok/s within one run), so every harvest gets its own baseline
  and each figure is the median of ``--repeat`` runs.

Scale (``--scale``): for each token count, ``saew harvest --shard-tokens S``, then
``saew coactivation`` of layer 0 and ``saew correlate`` of the harvested release, each in a
fresh process: wall time, CPU time and peak RSS. With shards, peak memory follows the shard, not
the corpus, and time is linear in the tokens.

Measured (2026-12-04, idle, AMD EPYC with AVX512-BF16 and no AMX, the O(d_sae) screen kernel;
medians of 3, each harvest against the bare forward just before it, which drifted 2,700-4,500
tok/s during the run; the ratios are good to about +-0.15):

    bench/harvest.py                 (6 x TopK 4,096)        bench/harvest.py --d-sae 1536
    --screen float32 : encodes 0.74 x the forward's time     0.44 x
                       forward + encodes 0.58 x              0.69 x
                       harvest, all included 0.29 x          0.48 x
                       harvest, steady state 0.44 x          0.84 x (above its own ceiling: drift)
    --screen bfloat16: encodes 0.78 x                        0.44 x
                       forward + encodes 0.56 x              0.70 x
                       harvest, all included 0.25 x          0.39 x
                       harvest, steady state 0.52 x          0.61 x
    (those bfloat16 rows are the 3-deep screen; the 1-deep one, now the default without AMX:
    91 exact dot products per token per layer, encodes 0.54 x, forward + encodes 0.65 x, harvest
    all included 0.27 x, steady state 0.58 x at 4,096)

    bench/harvest.py --scale 250000,1000000 --layers 6 --shard-tokens 250000   (3-deep screen)
       tokens          step   wall s    cpu s   tok/s  peak GB
       250000       harvest    146.4    272.0    1708     2.25
       250000  coactivation      6.0      7.9   41634     0.86
       250000     correlate     19.6     26.7   12774     1.33
      1000000       harvest    567.3   1081.6    1763     2.85   (2.93 before trim_heap)
      1000000  coactivation     16.4     24.0   60871     0.95
      1000000     correlate    130.8    176.2    7642     1.45

Measured (2026-12-03, idle, Intel with AMX, the previous screen kernel):

    plain forward 8 x 128 :     7057 tok/s
    bare forward          :     5802 tok/s (baseline 1.00)
    --screen float32 : encodes alone 5893 tok/s (0.98 x the forward's time); forward + encodes
                       0.50 x baseline; saew harvest 1072 tok/s (0.18 x)
    --screen bfloat16: encodes alone 7351 tok/s (0.79 x); forward + encodes 0.56 x;
                       saew harvest 1253 tok/s (0.22 x)

Measured (2026-12-02, this 2-core machine at load average 8-11 from other jobs, every command
under ``nice -n 19``; wall times are inflated by the contention, CPU seconds much less):

    bench/harvest.py                      (8,000 tokens, 6 x TopK 4,096, k 32)
    plain forward 8 x 128 :  588 tok/s
    bare forward          :  362 tok/s (harvest's batches, 68% real tokens; baseline 1.00)
    SAE encodes alone     :  406 tok/s (0.89 x the bare forward's time)
    forward + encodes     :  191 tok/s (0.53 x baseline: the ceiling)
    saew harvest          :  101 tok/s (0.28 x baseline; 0.52 in a quieter run the same day,
                                        cProfile: forward 48%, encode GEMM 14%, topk 6%, sparse
                                        codes' indexing 6%, examples 13%, Parquet writes 6%,
                                        loading the SAEs 5% of 8,000 tokens' run)

    bench/harvest.py --scale 50000,200000 --layers 2 --shard-tokens 50000
       tokens     step        wall s   cpu s   peak GB
        50000     harvest      108.2    42.1     0.99
        50000     coactivation   5.7     2.8     0.38
        50000     correlate     10.7     3.7     0.46
       200000     harvest      346.8   134.3     1.17
       200000     coactivation  24.7     5.8     0.44
       200000     correlate     29.1     9.2     0.57

The 0.8x target is not reachable with TopK SAEs of the usual widths: an encode is a dense GEMM of
2 x d_model x d_sae FLOPs per token per layer against a block's ~24 d_model^2, about expansion /
12 of the forward: six 4,096-wide (10.7x) encodes cost about the forward itself, six 1,536-wide
(train's default 4x) a third to a half, so forward + encodes is 0.56-0.70x before any other
work; 0.8x needs encodes under a quarter of the forward (3x expansion or less).

Which throughput figure was wrong (issue 16: "a plain forward runs about
3,000 tok/s, bench/harvest.py reports a 239 tok/s bare forward"): neither was a measurement
error, they measured different things under different load. 3,000 tok/s is full 8 x 128 batches
of real tokens on an idle machine; the old bench's "bare forward" had no warm-up (the first
calls pay torch's lazy initialisation), ran harvest's padded batches (68% real tokens: documents
shorter than a sequence) and ran on a machine at load 10, where two torch threads each get a
fraction of a core (a plain 8 x 128 forward then runs 290-360 tok/s with 2 threads, 980-1,320
with 1). The bench now warms up, prints the load average, the plain ceiling, the padded bare
forward and the encodes separately, so the ratios are taken within one run.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SAEW_PROGRESS", "0")

SETUP = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.factories import make_sae, put_sae
from saew.storage.lake import Lake
lake = Lake(sys.argv[2])
for L in range(int(sys.argv[3])):
    put_sae(lake, "bench", L, make_sae(384, int(sys.argv[4]), "topk", seed=L, k=int(sys.argv[5])))
"""


def _put_saes(home: Path, layers: int, d_sae: int, k: int) -> None:
    subprocess.run([sys.executable, "-c", SETUP, str(ROOT), str(home), str(layers), str(d_sae), str(k)],
                   check=True)


def _child(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS GB, stdout) of a command in a fresh process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "SAEW_PROGRESS": "0"})
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out, err = p.stdout.read(), p.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd}: failed\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e6, out.strip()


def throughput(a) -> None:
    import numpy as np
    import torch

    from saew.compute.corpus import load_corpus
    from saew.compute.lm.load import load_model
    from saew.storage.lake import Lake
    from tests.factories import make_sae, put_sae, run_saew

    model = load_model("minilm")
    docs = load_corpus("builtin")
    seqs = list(model.sequences(docs, a.tokens, 128))
    lens = [len(s[2]) for s in seqs]
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; {a.tokens} tokens in {len(seqs)} sequences "
          f"(mean {sum(lens) / len(lens):.0f} tokens)")

    def forward(ids, mask):
        with torch.inference_mode():
            model.module(input_ids=ids, attention_mask=mask)

    # warm-up (first-call allocations, kernel selection), not timed
    forward(torch.ones((8, 128), dtype=torch.long), torch.ones((8, 128), dtype=torch.long))

    flat = torch.tensor([t for s in seqs for t in s[2]][: a.tokens], dtype=torch.long)
    n_full = flat.numel() // (8 * 128)
    t0 = time.perf_counter()
    for i in range(n_full):
        ids = flat[i * 1024:(i + 1) * 1024].view(8, 128)
        forward(ids, torch.ones_like(ids))
    plain = n_full * 1024 / (time.perf_counter() - t0)

    def padded(chunk):   # as LoadedModel._forward pads a batch: specials, pad id, attention mask
        width = max(len(s[2]) for s in chunk) + len(model.prefix) + len(model.suffix)
        ids = torch.full((len(chunk), width), model.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(chunk):
            full = model.prefix + s[2] + model.suffix
            ids[r, :len(full)] = torch.tensor(full)
            mask[r, :len(full)] = 1
        return ids, mask

    batches = [padded(seqs[i:i + 8]) for i in range(0, len(seqs), 8)]
    fill = sum(lens) / sum(ids.numel() - 2 * ids.shape[0] for ids, _ in batches)

    def bare_rate() -> float:
        t0 = time.perf_counter()
        for ids, mask in batches:
            forward(ids, mask)
        return sum(lens) / (time.perf_counter() - t0)

    bare = bare_rate()

    # the SAE encodes alone (sparse codes of every layer, as harvest computes them) over the
    # residuals of the same batches, captured once: forward + encodes is harvest's ceiling
    from saew.compute.activations.codes import sparse_codes
    from saew.compute.activations.topk_screen import ScreenedTopK
    from saew.sae.encode import TorchSAE

    saes = [TorchSAE.from_params(make_sae(384, a.d_sae, "topk", seed=L, k=a.k)) for L in range(a.layers)]
    caught = [b.resid for b in model.iter_batches(docs, a.tokens, list(range(a.layers)), batch_size=8,
                                                  seq_len=128)]
    encoders = {"float32": saes, "bfloat16": [ScreenedTopK.prepare(s) for s in saes]}
    encode = {}
    with torch.inference_mode():
        sparse_codes(encoders["bfloat16"][0], caught[0][0], np.arange(len(caught[0][0])))  # numba compile
        for screen, encs in encoders.items():
            t0 = time.perf_counter()
            for resid in caught:
                ids = np.arange(len(resid[0]), dtype=np.int64)
                for L, sae in enumerate(encs):
                    sparse_codes(sae, resid[L], ids)
            encode[screen] = time.perf_counter() - t0
    del caught
    screened = encoders["bfloat16"]
    print(f"bf16 screen: depth {screened[0].depth} x d_in, {np.mean([e.exact_per_row for e in screened]):.1f} "
          f"exact dot products per token per layer for k {a.k} (last batch)")

    bares = [bare]

    def harvest(screen: str, tokens: int) -> tuple[float, float]:
        """(seconds of ``saew harvest``, the bare forward's rate measured just before it): this
        VM's speed drifts by up to 1.5x within minutes, so each harvest has its own baseline."""
        base = bare_rate()
        bares.append(base)
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            lake = Lake(home)
            for L in range(a.layers):
                put_sae(lake, "bench", L, make_sae(384, a.d_sae, "topk", seed=L, k=a.k))
            t0 = time.perf_counter()
            code, out, err = run_saew(home, "harvest", "--release", "bench", "--model", "minilm",
                                      "--corpus", "builtin", "--tokens", str(tokens), "--screen", screen)
            assert code == 0, err
            return time.perf_counter() - t0, base

    # harvest at --tokens N and at 3N, each (bare forward, harvest) pair --repeat times,
    # alternating sizes and screens; medians. The marginal rate 2N / (t(3N) - t(N)) is the
    # steady state, without the fixed costs (model and SAE loading, per-layer metadata and
    # commits), which t(N) - N / marginal estimates
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(a.repeat):
        for screen in encoders:
            for n in (a.tokens, 3 * a.tokens):
                runs.setdefault((screen, n), []).append(harvest(screen, n))

    def median(key):
        t, b = zip(*runs[key])
        return float(np.median(t)), float(np.median(b))

    took = {screen: median((screen, a.tokens)) for screen in encoders}
    took3 = {screen: median((screen, 3 * a.tokens)) for screen in encoders}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"layers={a.layers} d_sae={a.d_sae} topk k={a.k}")
    print(f"plain forward 8 x 128 : {plain:8.0f} tok/s (full batches of real tokens)")
    print(f"bare forward          : {bare:8.0f} tok/s (harvest's batches, {fill:.0%} real tokens, all "
          f"{model.spec.n_layers} blocks, baseline 1.00)")
    fwd = sum(lens) / bare
    for screen in encoders:
        ceiling = sum(lens) / (fwd + encode[screen])
        print(f"--screen {screen:8s}: SAE encodes alone {sum(lens) / encode[screen]:8.0f} tok/s ({a.layers} x topk "
              f"{a.d_sae}: {encode[screen] / fwd:.2f} x the bare forward's time); forward + encodes "
              f"{ceiling:6.0f} tok/s ({ceiling / bare:.2f} x baseline)")
        (t1, b1), (t3, b3) = took[screen], took3[screen]
        marginal = 2 * a.tokens / max(t3 - t1, 1e-9)
        print(f"{'':19s}  saew harvest {a.tokens / t1:6.0f} tok/s all included ({a.tokens / t1 / b1:.2f} x the "
              f"bare forward just before it, {b1:.0f} tok/s); steady state (tokens {a.tokens} -> "
              f"{3 * a.tokens}) {marginal:6.0f} tok/s ({marginal / ((b1 + b3) / 2):.2f} x; fixed costs "
              f"{t1 - a.tokens / marginal:.1f} s)")
    print(f"bare forward drift    : {min(bares):.0f} - {max(bares):.0f} tok/s over the run")
    print(f"peak RSS              : {peak_mb:.0f} MB")


def scale(a) -> None:
    py = str(ROOT / ".venv" / "bin" / "python")
    sizes = [int(s) for s in a.scale.split(",")]
    print(f"minilm, {a.layers} layers x topk d_sae {a.d_sae} k {a.k}, --shard-tokens {a.shard_tokens}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'tokens':>9} {'step':>13} {'wall s':>8} {'cpu s':>8} {'tok/s':>7} {'peak GB':>8}")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="saew-bench-") as tmp:
            home = Path(tmp) / "home"
            _put_saes(home, a.layers, a.d_sae, a.k)
            for step, cmd in (
                    ("harvest", ["harvest", "--release", "bench", "--model", "minilm", "--corpus", "builtin",
                                 "--tokens", str(n), "--shard-tokens", str(a.shard_tokens)]),
                    ("coactivation", ["coactivation", "--release", "bench", "--layer", "0"]),
                    ("correlate", ["correlate", "--release", "bench"])):
                wall, cpu, peak, _ = _child([py, "-m", "saew", *cmd, "--home", str(home)])
                print(f"{n:9d} {step:>13} {wall:8.1f} {cpu:8.1f} {n / wall:7.0f} {peak:8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3, help="harvest runs per size and screen (medians)")
    ap.add_argument("--scale", default=None, help="comma-separated token counts (e.g. 250000,1000000)")
    ap.add_argument("--shard-tokens", type=int, default=250_000)
    a = ap.parse_args()
    scale(a) if a.scale else throughput(a)


if __name__ == "__main__":
    main()
