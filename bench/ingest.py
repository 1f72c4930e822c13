"""Benchmark: ``saew ingest sae`` of a GPT-2-small-v5-32k-shaped SAE (32,768 x 768).

Baseline, measured in the same run: a plain pyarrow write of the same arrays (the features
table's columns, each decoder row / encoder column a list<float32>, zstd, as the lake stores
them) to one Parquet file. Each side runs in its own child process, which reports its own
wall time and peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so neither pays the
other's memory. The ingest is timed inside its process around ``saew.cli.main.main`` (parse,
sha256, validation, staging, commit, runs row and catalog refresh), import time excluded.

    .venv/bin/python bench/ingest.py [--d-sae 32768] [--d-in 768] [--format saelens|openai]

Target: ingest time <= 2x the baseline, peak memory < 3 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_baseline(src: Path, fmt: str, out: Path) -> dict:
    """Read the same arrays (not timed), then time a plain pyarrow write of them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from saew.sae.saelens import WEIGHTS_FILE
    from saew.storage.lake import float_lists

    if fmt == "saelens":
        from safetensors.numpy import load_file
        t = load_file(str(src / WEIGHTS_FILE))
        w_enc, w_dec, b_enc = t["W_enc"], t["W_dec"], t["b_enc"]
    else:
        import torch
        sd = torch.load(src, weights_only=True)
        w_enc, w_dec, b_enc = (sd["encoder.weight"].numpy().T, sd["decoder.weight"].numpy().T,
                               sd["latent_bias"].numpy())
    t0 = time.perf_counter()
    n = w_dec.shape[0]
    table = pa.table({"feature": np.arange(n, dtype=np.int32), "w_enc": float_lists(w_enc.T),
                      "b_enc": b_enc, "w_dec": float_lists(w_dec),
                      "threshold": pa.nulls(n, pa.float32()),
                      "dec_norm": np.linalg.norm(w_dec, axis=1).astype(np.float32)})
    pq.write_table(table, out / "baseline.parquet", compression="zstd")
    return {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb()}


def child_ingest(src: Path, fmt: str, home: Path) -> dict:
    import contextlib
    import io

    from saew.cli.main import main  # imports every step module before timing
    if fmt == "openai":
        import torch  # noqa: F401  (import time is not ingest time)
    t0 = time.perf_counter()
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["ingest", "sae", str(src), "--release", "bench", "--layer", "6", "--home", str(home)])
    if code != 0:
        raise SystemExit(f"ingest failed: {err.getvalue()}")
    return {"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb()}


def make_sae(folder: Path, d_sae: int, d_in: int, fmt: str) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    w_dec = rng.standard_normal((d_sae, d_in), dtype=np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    w_enc = np.ascontiguousarray(w_dec.T * 1.1)
    b_enc = rng.standard_normal(d_sae, dtype=np.float32) * 0.01
    b_dec = rng.standard_normal(d_in, dtype=np.float32) * 0.01
    if fmt == "saelens":
        from safetensors.numpy import save_file

        from saew.sae.saelens import CFG_FILE, WEIGHTS_FILE
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"W_enc": w_enc, "W_dec": w_dec, "b_enc": b_enc, "b_dec": b_dec},
                  str(folder / WEIGHTS_FILE))
        (folder / CFG_FILE).write_text(json.dumps({
            "d_in": d_in, "d_sae": d_sae, "architecture": "topk", "k": 32, "apply_b_dec_to_input": True,
            "normalize_activations": "layer_norm",
            "metadata": {"sae_lens_version": "6.0.0", "model_name": "gpt2-small",
                         "hook_name": "blocks.6.hook_resid_post"}}))
        return folder
    import torch
    from tests.formats import openai_state_dict
    from saew.sae.params import SAEParams
    f = folder / "6.pt"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(openai_state_dict(SAEParams(w_enc=w_enc, b_enc=b_enc, w_dec=w_dec, b_dec=b_dec,
                                           architecture="topk", k=32)), f)
    return f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-sae", type=int, default=32768)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--format", choices=["saelens", "openai"], default="saelens")
    ap.add_argument("--child", choices=["baseline", "ingest"])
    ap.add_argument("--src")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.child:
        fn = child_baseline if a.child == "baseline" else child_ingest
        print(json.dumps(fn(Path(a.src), a.format, Path(a.out))))
        return
    with tempfile.TemporaryDirectory(prefix="saew-bench-") as tmp:
        tmp = Path(tmp)
        src = make_sae(tmp / "sae", a.d_sae, a.d_in, a.format)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SAEW_PROGRESS": "0"}
        res = {}
        for which, out in (("baseline", tmp), ("ingest", tmp / "home")):
            r = subprocess.run([sys.executable, __file__, "--child", which, "--src", str(src), "--out", str(out),
                                "--format", a.format], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"{which} child failed:\n{r.stderr[-3000:]}")
            res[which] = json.loads(r.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in src.rglob("*")) if src.is_dir() else src.stat().st_size
    b, i = res["baseline"], res["ingest"]
    print(f"ingest sae {a.format} {a.d_sae} x {a.d_in} ({size / 2**20:.0f} MiB of weights)")
    print(f"  pyarrow write (baseline): {b['seconds']:.2f} s   peak RSS {b['peak_mb']:.0f} MB")
    print(f"  saew ingest sae:          {i['seconds']:.2f} s   peak RSS {i['peak_mb']:.0f} MB")
    print(f"  ratio ingest / baseline:  {i['seconds'] / b['seconds']:.2f}x   (target <= 2x; peak target < 3072 MB)")


if __name__ == "__main__":
    main()
