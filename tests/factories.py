"""Small factories that build fixtures: SAE weights, lakes, and the in-process CLI runner.

Format writers (SAELens folders, OpenAI .pt, Gemma Scope npz, dictionary_learning) live in
``tests/formats.py``.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from saew.sae.params import SAEParams


def run_saew(home: Path, *args: str | os.PathLike) -> tuple[int, str, str]:
    """Run ``saew ARGS --home HOME`` in-process; return (exit code, stdout, stderr)."""
    from saew.cli.main import main

    argv = [str(a) for a in args]
    if "--home" not in argv and argv and argv[0] not in {"--help", "--version"}:
        argv += ["--home", str(home)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse errors
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def make_sae(d_in: int = 16, d_sae: int = 32, architecture: str = "relu", seed: int = 0,
             k: int | None = None, threshold_scale: float = 1.0, **kw) -> SAEParams:
    """Random SAE weights with unit-norm decoder rows (SAELens orientation)."""
    rng = np.random.default_rng(seed)
    w_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    w_enc = (w_dec.T + 0.1 * rng.standard_normal((d_in, d_sae))).astype(np.float32)
    thr = None
    if architecture == "jumprelu":
        thr = (threshold_scale * rng.uniform(0.05, 0.5, d_sae)).astype(np.float32)
    if architecture == "topk" and k is None:
        k = max(1, d_sae // 8)
    return SAEParams(w_enc=w_enc, b_enc=(0.01 * rng.standard_normal(d_sae)).astype(np.float32),
                     w_dec=w_dec, b_dec=(0.01 * rng.standard_normal(d_in)).astype(np.float32),
                     architecture=architecture, threshold=thr, k=k, **kw)


def put_sae(lake, release: str, layer: int, p: SAEParams, run_id: str = "test") -> None:
    """Write an SAE straight into a lake (what `ingest sae` ends with), and refresh the catalog."""
    from saew.storage import catalog
    from saew.storage.saes import write_sae

    with lake.transaction():
        write_sae(lake, release, layer, p, source_format="test", source_path="<factory>",
                  source_sha256="0" * 64, run_id=run_id)
    catalog.refresh(lake)
