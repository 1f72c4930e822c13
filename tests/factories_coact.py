"""Factories for the activation-statistics tests: SAEs plus activations from dense matrices."""
from __future__ import annotations

import numpy as np

from tests.factories import make_sae, put_sae


def put_activations(lake, release: str, layer: int, m: np.ndarray, n_tokens: int | None = None,
                    token_ids: np.ndarray | None = None, d_sae: int | None = None,
                    with_sae: bool = True) -> None:
    """Write a dense [tokens x features] matrix as one layer's ``activations`` (non-zero only).

    Row r is token ``token_ids[r]`` (default r). ``n_tokens`` (default: the rows) goes to
    ``activation_sets``; pass -1 to write no activation_sets row. An SAE of width
    ``d_sae`` (default: the columns) is put first unless ``with_sae`` is False.
    """
    from saew.storage import catalog

    m = np.asarray(m, np.float32)
    if with_sae:
        put_sae(lake, release, layer, make_sae(d_in=4, d_sae=d_sae or m.shape[1], seed=layer))
    ids = np.arange(m.shape[0]) if token_ids is None else np.asarray(token_ids)
    r, f = np.nonzero(m)
    with lake.transaction():
        lake.write("activations", {"token_id": ids[r].astype(np.int64), "feature": f.astype(np.int32),
                                   "value": m[r, f]}, release=release, layer=layer)
        if n_tokens != -1:
            lake.write("activation_sets", {"n_tokens": [m.shape[0] if n_tokens is None else n_tokens],
                                           "source": ["test"], "run_id": ["test"]},
                       release=release, layer=layer)
    catalog.refresh(lake)


def sparse_matrix(tokens: int, d: int, density: float, seed: int) -> np.ndarray:
    """A random non-negative activation matrix (Exp(1) values where active)."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((tokens, d)) < density, rng.exponential(1.0, (tokens, d)) + 0.01,
                    0.0).astype(np.float32)


def lake_files(home) -> list[str]:
    """Every Parquet file under the lake (to check that a failed command wrote nothing)."""
    from pathlib import Path

    root = Path(home) / "lake"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet")) if root.exists() else []
