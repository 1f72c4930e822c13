"""Compiled kernels over pairs of rows and over candidate edges (numba, float64 accumulation).

``row_sqnorms`` (||a_i||^2), ``pair_sqdist`` (||a_i - b_j||^2) and ``pair_dot`` (a_i . b_j) for
paired rows of float32 matrices, without float64 copies of them; ``near_edges``: the
certificate's near-tight test on candidate edges.  Used by ``compute.matching.costs`` and
``compute.matching.solver``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, fastmath=True)
def _sqdist_pairs(a, b, i, j, out):
    d = a.shape[1]
    for p in prange(i.shape[0]):
        x = a[i[p]]
        y = b[j[p]]
        s = 0.0
        for q in range(d):
            t = np.float64(x[q]) - np.float64(y[q])
            s += t * t
        out[p] = s


@njit(cache=True, parallel=True, fastmath=True)
def _dot_pairs(a, b, i, j, out):
    d = a.shape[1]
    for p in prange(i.shape[0]):
        x = a[i[p]]
        y = b[j[p]]
        s = 0.0
        for q in range(d):
            s += np.float64(x[q]) * np.float64(y[q])
        out[p] = s


@njit(cache=True, parallel=True, fastmath=True)
def _sqnorms(a, out):
    d = a.shape[1]
    for p in prange(a.shape[0]):
        s = 0.0
        for q in range(d):
            t = np.float64(a[p, q])
            s += t * t
        out[p] = s


@njit(cache=True, parallel=True)
def _near_edges(val, i, j, u, v, re, ce, sre, sce, coarse, tol, skip, out):
    for p in prange(val.shape[0]):
        r, c = i[p], j[p]
        err = sre[r] + sce[c] if coarse[p] else re[r] + ce[c]
        out[p] = (not skip[p]) and val[p] - u[r] - v[c] - 2.0 * err <= tol


def near_edges(val, i, j, u, v, row_err, col_err, coarse_row_err, coarse_col_err, coarse,
               tol: float, skip) -> np.ndarray:
    """Mask of edges (not ``skip``) with val - u_i - v_j - 2 err_ij <= tol, where err_ij is
    coarse_row_err_i + coarse_col_err_j for ``coarse`` edges, else row_err_i + col_err_j."""
    out = np.empty(len(val), dtype=np.bool_)
    if len(val):
        _near_edges(val, i, j, u, v, row_err, col_err, coarse_row_err, coarse_col_err, coarse,
                    float(tol), skip, out)
    return out


def row_sqnorms(a: np.ndarray) -> np.ndarray:
    """||a_i||^2 per row, accumulated in float64 (no float64 copy of ``a``)."""
    out = np.empty(a.shape[0], dtype=np.float64)
    if a.shape[0]:
        _sqnorms(np.ascontiguousarray(a), out)
    return out


def pair_sqdist(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """||a_i - b_j||^2 for paired rows, accumulated in float64 (float32 inputs are exact)."""
    return _pairs(_sqdist_pairs, a, b, i, j)


def pair_dot(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """a_i . b_j for paired rows, accumulated in float64."""
    return _pairs(_dot_pairs, a, b, i, j)


def _pairs(kernel, a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.empty(len(i), dtype=np.float64)
    if len(i):
        kernel(a, b, np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64), out)
    return out
