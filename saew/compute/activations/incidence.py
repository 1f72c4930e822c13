"""Sparse activations as incidence matrices: token rows and the tokens x features matrix both ways.

Shared by ``coactivation`` (B^T B) and ``correlate`` (X^T Y): ``token_rows`` maps token ids
to dense row numbers, ``incidence`` groups (row, feature, value) triples token-major and
feature-major with stable counting sorts (compiled, ``compute.activations.kernels``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def token_rows(*token_ids: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Dense row numbers for token ids shared across arrays: (rows per array, number of rows).

    Ids in a compact range map to ``id - min`` (rows without activity just stay empty);
    sparse ids go through ``np.unique``.
    """
    nonempty = [t for t in token_ids if t.size]
    if not nonempty:
        return [np.zeros(0, np.int64) for _ in token_ids], 0
    lo = min(int(t.min()) for t in nonempty)
    hi = max(int(t.max()) for t in nonempty)
    total = sum(t.size for t in token_ids)
    if hi - lo + 1 <= 2 * total + 1024:
        return [t - lo for t in token_ids], hi - lo + 1
    uniq, inv = np.unique(np.concatenate(token_ids), return_inverse=True)
    out, start = [], 0
    for t in token_ids:
        out.append(inv[start:start + t.size].astype(np.int64))
        start += t.size
    return out, int(uniq.size)


@dataclass(frozen=True)
class Incidence:
    """A 0/1 (or valued) tokens x features matrix held both ways.

    Token-major: t_ptr [n_rows+1], t_feat (features ascending within a token), t_val.
    Feature-major: f_ptr [d+1], f_tok (tokens ascending within a feature), f_val.
    """
    n_rows: int
    d: int
    t_ptr: np.ndarray
    t_feat: np.ndarray
    t_val: np.ndarray
    f_ptr: np.ndarray
    f_tok: np.ndarray
    f_val: np.ndarray


def incidence(rows: np.ndarray, feature: np.ndarray, value: np.ndarray, n_rows: int, d: int) -> Incidence:
    """Group (row, feature, value) triples by token and by feature with stable counting sorts."""
    from saew.compute.activations import kernels

    rows = np.ascontiguousarray(rows, dtype=np.int64)
    feature = np.ascontiguousarray(feature, dtype=np.int64)
    _, by_f = kernels.counting_order(feature, d)
    t_ptr, by_t = kernels.counting_order(rows[by_f], n_rows)
    order = by_f[by_t]                      # token-major, features ascending within a token
    del by_f, by_t
    t_feat = feature[order].astype(np.int32)
    t_rows = rows[order]
    t_val = np.ascontiguousarray(value[order], dtype=np.float32)
    del order
    f_ptr, by_f2 = kernels.counting_order(t_feat.astype(np.int64), d)
    f_tok = t_rows[by_f2]                   # feature-major, tokens ascending within a feature
    f_val = t_val[by_f2]
    return Incidence(n_rows, d, t_ptr, t_feat, t_val, f_ptr, f_tok, f_val)


RANGES = 16   # ranges of feature a the running pair counts of a sharded layer are kept in


def row_ranges(d: int, n: int = RANGES) -> np.ndarray:
    """Bounds [lo_0 = 0, lo_1, ..., d] of at most ``n`` equal ranges of the features 0..d-1."""
    return np.unique(np.linspace(0, d, max(1, min(n, d)) + 1).astype(np.int64))
