"""Benchmark ``saew demo`` end to end: minilm at 20,000 tokens and the default (smollm2, all
30 layers), each in a fresh temporary home, as a subprocess (its own peak memory).

    .venv/bin/python bench/demo.py [--only minilm|smollm2] [--minilm-tokens 20000]
                                   [--smollm2-tokens N]

For each demo it prints the wall time against its budget (issue 3: minilm at 20k tokens
<= 5 min, smollm2 <= 15 min on the 2-core machine), the time of every step, and, as a RATIO,
the whole demo against a baseline measured in the same run: one bare forward pass of the same
model over the same number of corpus tokens (batches of 8 sequences of 128 tokens, no hooks),
the least any pipeline that reads the model's residual stream must spend.
"""
from __future__ import annotations

import argparse
import os
import re
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
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("SAEW_PROGRESS", "0")

BUDGET_MIN = {"minilm": 5.0, "smollm2": 15.0}
STEP = re.compile(r"^\[demo\] (.+) \.\.\.$")
DONE = re.compile(r"^\[demo\]\s+done in ([0-9.]+)s")


def bare_forward(model_name: str, tokens: int) -> tuple[float, float]:
    """(model load seconds, seconds of one bare forward pass over ``tokens`` corpus tokens)."""
    import torch

    from saew.compute.corpus import load_corpus
    from saew.compute.lm.load import load_model

    t0 = time.perf_counter()
    model = load_model(model_name)
    t_load = time.perf_counter() - t0
    seqs = list(model.sequences(load_corpus("builtin"), tokens, 128))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(seqs), 8):
            chunk = seqs[i:i + 8]
            full = [model.prefix + s[2] + model.suffix for s in chunk]
            width = max(len(f) for f in full)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, f in enumerate(full):
                ids[r, :len(f)] = torch.tensor(f)
                mask[r, :len(f)] = 1
            model.module(input_ids=ids, attention_mask=mask)
    return t_load, time.perf_counter() - t0


def run_demo(model_name: str, tokens: int | None) -> tuple[float, list[tuple[str, float]], str, float]:
    """(wall seconds, [(step, seconds)], summary text, peak RSS GB) of one ``saew demo``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(ROOT / ".venv" / "bin" / "saew"), "demo", "--home", str(Path(tmp) / "home"),
               "--model", model_name]
        if tokens:
            cmd += ["--tokens", str(tokens)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"bench/demo.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        steps, current = [], None
        for line in p.stderr.splitlines():
            if m := STEP.match(line):
                current = m.group(1)
            elif (m := DONE.match(line)) and current:
                steps.append((current, float(m.group(1))))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return wall, steps, p.stdout.strip(), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["minilm", "smollm2"], default=None)
    ap.add_argument("--minilm-tokens", type=int, default=20000)
    ap.add_argument("--smollm2-tokens", type=int, default=None, help="default: the demo's own")
    a = ap.parse_args()
    from saew.cli.demo import DEFAULT_TOKENS

    todo = [("minilm", a.minilm_tokens), ("smollm2", a.smollm2_tokens)]
    ok = True
    for name, tokens in todo:
        if a.only and name != a.only:
            continue
        n_tok = tokens or DEFAULT_TOKENS[name]
        t_load, t_fwd = bare_forward(name, n_tok)
        wall, steps, summary, peak = run_demo(name, tokens)
        within = wall / 60 <= BUDGET_MIN[name]
        ok &= within
        print(f"== saew demo --model {name} --tokens {n_tok}")
        print(f"baseline: model load {t_load:.1f} s + one bare forward pass {t_fwd:.1f} s "
              f"= {t_load + t_fwd:.1f} s")
        print(f"demo: {wall:.1f} s = {wall / 60:.2f} min (budget {BUDGET_MIN[name]:.0f} min: "
              f"{'ok' if within else 'OVER'}); ratio {wall / (t_load + t_fwd):.1f} x baseline; "
              f"peak RSS of the demo processes {peak:.2f} GB")
        for step, sec in sorted(steps, key=lambda s: -s[1]):
            print(f"  {sec:7.1f} s  {100 * sec / wall:5.1f} %  {step}")
        print("\n".join("  | " + ln for ln in summary.splitlines()))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
