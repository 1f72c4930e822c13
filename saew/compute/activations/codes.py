"""SAE codes as sparse COO pieces, and a harvest's lake write (tokens, activations, activation_sets).

Shared by ``saew harvest`` and ``saew train --harvest`` (which records its own training pass
as a harvest): ``sparse_rows`` turns a batch of codes into (token_id, feature, value) pieces,
``write_harvest`` writes the pieces of every layer with the batches' token metadata.
"""
from __future__ import annotations

import numpy as np

from saew.errors import BadInput


def write_harvest(lake, release: str, run_id: str, batches: list, coo: dict[int, list],
                  corpus: str) -> tuple[int, dict[int, float]]:
    """Write ``tokens`` (from the batches' token metadata), one ``activations`` partition per
    layer (the concatenated COO pieces) and ``activation_sets``; (tokens seen, mean L0 per layer)."""
    n_seen = sum(len(b) for b in batches)
    if n_seen == 0:
        raise BadInput(f"--corpus {corpus}: produced no tokens")
    lake.write("tokens", {"token_id": np.concatenate([b.token_ids for b in batches]),
                          "doc": np.concatenate([b.doc for b in batches]),
                          "pos": np.concatenate([b.pos for b in batches]),
                          "token": [t for b in batches for t in b.tokens]}, release=release)
    n_active = {}
    for L in sorted(coo):
        pieces = coo.pop(L)
        tid, feat, val = (np.concatenate([p[i] for p in pieces]) for i in range(3))
        lake.write("activations", {"token_id": tid, "feature": feat, "value": val},
                   release=release, layer=int(L))
        lake.write("activation_sets", {"n_tokens": [n_seen], "source": ["harvest"],
                                       "run_id": [run_id]}, release=release, layer=int(L))
        n_active[int(L)] = len(val) / n_seen
    return n_seen, n_active


def sparse_rows(f, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero entries of an activation matrix f [n, d_sae] as (token_id int64, feature int32,
    value float32), row-major (sorted by token, then feature)."""
    idx = f.nonzero()
    rows = idx[:, 0].numpy()
    feat = idx[:, 1].numpy().astype(np.int32)
    val = f[idx[:, 0], idx[:, 1]].numpy().astype(np.float32)
    return token_ids[rows].astype(np.int64), feat, val
