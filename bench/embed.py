"""Benchmark ``saew embed``'s encoding: length-sorted batches of 256 against sentence-transformers'
own batching (texts grouped by character count, batches of 16: the previous default), same
texts, same model, same run.

    .venv/bin/python bench/embed.py [--home DIR --release R] [--texts 3000] [--dtype auto]
                                    [--all]

Texts: the distinct cleaned descriptions of a release (``--home``; e.g. a finished ``saew demo``
home, 66,036 texts for SmolLM2), else synthetic ``saew describe`` token lists (five quoted
minilm vocabulary tokens each, punctuation-heavy like the demo's), ``--texts`` of them.
Prints CPU seconds and wall seconds of each, the new/old RATIO, the padding (padded tokens /
real tokens) of both batchings, and how far the new vectors are from the old (min cosine).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SAEW_PROGRESS", "0")


def release_texts(home: str, release: str) -> list[str]:
    import numpy as np

    from saew.compute.text.embed import clean_description
    from saew.storage.lake import Lake

    t = Lake(Path(home)).query("SELECT description FROM descriptions WHERE release = ?", [release])
    cleaned = [clean_description(s) for s in t.column("description").to_pylist()]
    return np.unique(np.array([c for c in cleaned if c], dtype=str)).tolist()


def synthetic_texts(tokenizer, n: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = [w for w in tokenizer.get_vocab() if not w.startswith("[")]
    punct = list(".,;:()[]{}?!\"'-_=+*/\\|<>#") + ["..", "...", "\\n", "\\t", "==", "->"]
    texts = set()
    while len(texts) < n:
        toks = [str(rng.choice(punct)) if rng.random() < 0.4 else str(rng.choice(vocab)).replace("##", "")
                for _ in range(5)]
        texts.add(", ".join(f'"{" " if rng.random() < 0.5 else ""}{t}"' for t in toks))
    return sorted(texts)


def padding(lengths, batches) -> float:
    used = sum(int(lengths[b].sum()) for b in batches)
    return sum(int(lengths[b].max()) * len(b) for b in batches) / max(1, used)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--release", default="demo-smollm2")
    ap.add_argument("--texts", type=int, default=3000,
                    help="synthetic texts (without --home), or a seeded sample of the release's")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--old-batch-size", type=int, default=16)
    ap.add_argument("--all", action="store_true", help="with --home: every text of the release")
    a = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from saew.compute.text.embed import BATCH_SIZE, embed_texts, length_batches, resolve_dtype, \
        resolve_embedder, token_lengths

    _, path = resolve_embedder(None)
    dtype = resolve_dtype(a.dtype)
    kw = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if dtype == "bfloat16" else {}
    model = SentenceTransformer(path, device="cpu", local_files_only=True, **kw)
    texts = release_texts(a.home, a.release) if a.home else synthetic_texts(model.tokenizer, a.texts)
    if a.home and not a.all and a.texts < len(texts):
        keep = np.sort(np.random.default_rng(0).choice(len(texts), a.texts, replace=False))
        texts = [texts[i] for i in keep]
    lengths = token_lengths(model, texts)
    chars = np.array([len(t) for t in texts])
    old_batches = [np.argsort(-chars, kind="stable")[s:s + a.old_batch_size]
                   for s in range(0, len(texts), a.old_batch_size)]
    print(f"{len(texts)} texts ({'release ' + a.release if a.home else 'synthetic'}), "
          f"{lengths.mean():.1f} tokens on average, dtype {dtype}, torch threads {torch.get_num_threads()}")
    print(f"padding: old (chars, batch {a.old_batch_size}) {padding(lengths, old_batches):.3f}, "
          f"new (tokens, batch {BATCH_SIZE}) {padding(lengths, length_batches(lengths, BATCH_SIZE)):.3f}")

    c0, w0 = time.process_time(), time.perf_counter()
    old = model.encode(texts, batch_size=a.old_batch_size, convert_to_numpy=True,
                       normalize_embeddings=True).astype(np.float32)
    old_cpu, old_wall = time.process_time() - c0, time.perf_counter() - w0
    old /= np.linalg.norm(old, axis=1, keepdims=True)
    c0, w0 = time.process_time(), time.perf_counter()
    new = embed_texts(path, texts, dtype=dtype)   # loads the model itself, as saew embed does
    new_cpu, new_wall = time.process_time() - c0, time.perf_counter() - w0
    cos = np.sum(old * new, axis=1)
    print(f"old: {old_cpu:.1f} s CPU, {old_wall:.1f} s wall")
    print(f"new: {new_cpu:.1f} s CPU, {new_wall:.1f} s wall (model load included)")
    print(f"RATIO new/old: {new_cpu / old_cpu:.3f} CPU, {new_wall / old_wall:.3f} wall")
    print(f"new vs old vectors: min cosine {cos.min():.6f}, mean {cos.mean():.7f}, "
          f"identical rows {np.mean((old == new).all(1)):.3f}")


if __name__ == "__main__":
    main()
