"""Harvest on minilm: throughput against a bare forward pass, and memory / time against corpus size.

    .venv/bin/python bench/harvest.py [--tokens 8000] [--d-sae 4096] [--k 32] [--layers 6]
    .venv/bin/python bench/harvest.py --scale 250000,1000000 [--shard-tokens 250000]

Throughput (default): in one process, over the same corpus prefix,

* ``plain forward 8 x 128``: the minilm module on full 8 x 128 batches of real tokens (no
  padding, no hooks): the machine's ceiling for this model;
* ``bare forward``: the module over exactly the batches harvest feeds it (the same sequences,
  lengths and padding, all blocks, no capture);
* ``saew harvest``: the command end to end (capture, SAE encode, sparse codes, examples,
  Parquet writes, commits), as a ratio to the bare forward (target >= 0.8).

Scale (``--scale``): for each token count, ``saew harvest --shard-tokens S`` and then
``saew coactivation`` of the harvested release, each in a fresh process: wall time, CPU time and
peak RSS. With shards, peak memory follows the shard, not the corpus (flat), and time is
linear in the tokens.
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
    t0 = time.perf_counter()
    for ids, mask in batches:
        forward(ids, mask)
    bare = sum(lens) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        lake = Lake(home)
        for L in range(a.layers):
            put_sae(lake, "bench", L, make_sae(384, a.d_sae, "topk", seed=L, k=a.k))
        t0 = time.perf_counter()
        code, out, err = run_saew(home, "harvest", "--release", "bench", "--model", "minilm",
                                  "--corpus", "builtin", "--tokens", str(a.tokens))
        took = time.perf_counter() - t0
        assert code == 0, err
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"layers={a.layers} d_sae={a.d_sae} topk k={a.k}")
    print(f"plain forward 8 x 128 : {plain:8.0f} tok/s (full batches of real tokens)")
    print(f"bare forward          : {bare:8.0f} tok/s (harvest's batches, {fill:.0%} real tokens, all "
          f"{model.spec.n_layers} blocks, baseline 1.00)")
    print(f"saew harvest          : {a.tokens / took:8.0f} tok/s ({bare and a.tokens / took / bare:.2f} x baseline, "
          f"incl. SAE encodes, examples and Parquet writes)")
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
                    ("coactivation", ["coactivation", "--release", "bench", "--layer", "0"])):
                wall, cpu, peak, _ = _child([py, "-m", "saew", *cmd, "--home", str(home)])
                print(f"{n:9d} {step:>13} {wall:8.1f} {cpu:8.1f} {n / wall:7.0f} {peak:8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--scale", default=None, help="comma-separated token counts (e.g. 250000,1000000)")
    ap.add_argument("--shard-tokens", type=int, default=250_000)
    a = ap.parse_args()
    scale(a) if a.scale else throughput(a)


if __name__ == "__main__":
    main()
