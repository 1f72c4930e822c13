"""Harvest throughput on minilm: tokens/s of ``saew harvest`` (capture + SAE encode + sparse
accumulation + Parquet writes) as a ratio to a bare forward pass over the same sequences
(the baseline, measured in the same run), plus peak memory.

    .venv/bin/python bench/harvest.py [--tokens 4000] [--d-sae 4096] [--k 32]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SAEW_PROGRESS", "0")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    a = ap.parse_args()

    import torch

    from saew.compute.corpus import load_corpus
    from saew.compute.lm.load import load_model
    from tests.factories import make_sae, put_sae, run_saew
    from saew.storage.lake import Lake

    model = load_model("minilm")
    docs = load_corpus("builtin")
    seqs = list(model.sequences(docs, a.tokens, 128))

    # baseline: the bare forward pass through all 6 blocks, batches of 8, no capture
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(seqs), 8):
            chunk = seqs[i:i + 8]
            width = max(len(s[2]) for s in chunk) + 2
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(chunk):
                full = model.prefix + s[2] + model.suffix
                ids[r, :len(full)] = torch.tensor(full)
                mask[r, :len(full)] = 1
            model.module(input_ids=ids, attention_mask=mask)
    base = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        lake = Lake(home)
        for L in range(6):
            put_sae(lake, "bench", L, make_sae(384, a.d_sae, "topk", seed=L, k=a.k))
        t0 = time.perf_counter()
        code, out, err = run_saew(home, "harvest", "--release", "bench", "--model", "minilm",
                                  "--corpus", "builtin", "--tokens", str(a.tokens))
        took = time.perf_counter() - t0
        assert code == 0, err
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tokens={a.tokens} layers=6 d_sae={a.d_sae} topk k={a.k}")
    print(f"bare forward  : {a.tokens / base:8.0f} tok/s (baseline 1.00)")
    print(f"saew harvest  : {a.tokens / took:8.0f} tok/s ({base / took:.2f} x baseline, "
          f"incl. Parquet writes and the cached corpus)")
    print(f"peak RSS      : {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
