"""Compiled (numba) kernels of the activation statistics: sparse products row by row.

Imported lazily by ``coactivation``, ``correlate`` and ``incidence`` (numba is slow to
import, and ``saew --help`` imports every step module). Compiled code is cached on disk.
Every kernel works on a tokens x features activity matrix held both ways (see
``incidence.Incidence``) and runs over chunks of features on every core (``prange``), each
chunk with its own dense accumulator row of length d_sae that is reset after each row.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def counting_order(keys, n_keys):
    """Stable counting sort: (indptr [n_keys+1], order) with keys[order] ascending."""
    ptr = np.zeros(n_keys + 1, np.int64)
    for i in range(keys.shape[0]):
        ptr[keys[i] + 1] += 1
    for k in range(n_keys):
        ptr[k + 1] += ptr[k]
    pos = ptr[:-1].copy()
    order = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        k = keys[i]
        order[pos[k]] = i
        pos[k] += 1
    return ptr, order


@nb.njit(parallel=True, cache=True)
def pair_row_sizes(t_ptr, t_feat, f_ptr, f_tok, d, n_chunks):
    """Symbolic pass: for every feature a, the number of b > a sharing a token with it."""
    sizes = np.zeros(d, np.int64)
    for c in nb.prange(n_chunks):
        mark = np.zeros(d, np.uint8)
        touched = np.empty(d, np.int32)
        for a in range(c, d, n_chunks):
            m = 0
            for p in range(f_ptr[a], f_ptr[a + 1]):
                t = f_tok[p]
                for q in range(t_ptr[t + 1] - 1, t_ptr[t] - 1, -1):
                    b = t_feat[q]
                    if b <= a:
                        break
                    if mark[b] == 0:
                        mark[b] = 1
                        touched[m] = b
                        m += 1
            for u in range(m):
                mark[touched[u]] = 0
            sizes[a] = m
    return sizes


@nb.njit(parallel=True, cache=True)
def pair_rows(t_ptr, t_feat, f_ptr, f_tok, d, n_chunks, offsets, out_b, out_n):
    """Numeric pass: fill (b, n_ab) of every row a at offsets[a], b ascending."""
    for c in nb.prange(n_chunks):
        acc = np.zeros(d, np.int32)   # n_ab <= N < 2^31
        touched = np.empty(d, np.int32)
        for a in range(c, d, n_chunks):
            m = 0
            for p in range(f_ptr[a], f_ptr[a + 1]):
                t = f_tok[p]
                for q in range(t_ptr[t + 1] - 1, t_ptr[t] - 1, -1):
                    b = t_feat[q]
                    if b <= a:
                        break
                    if acc[b] == 0:
                        touched[m] = b
                        m += 1
                    acc[b] += 1
            o = offsets[a]
            for u in range(m):
                b = touched[u]
                out_b[o + u] = b
                out_n[o + u] = acc[b]
                acc[b] = 0


@nb.njit(cache=True, inline="always")
def pearson(n, sx, sy, sxx, syy, sxy):
    """r = (N sxy - sx sy) / sqrt((N sxx - sx^2)(N syy - sy^2)); NaN when a variance is 0.

    Pearson's product-moment correlation from sufficient statistics over n observations.
    """
    vx = n * sxx - sx * sx
    vy = n * syy - sy * sy
    if vx <= 0.0 or vy <= 0.0:
        return np.nan
    r = (n * sxy - sx * sy) / np.sqrt(vx * vy)
    return min(1.0, max(-1.0, r))


@nb.njit(parallel=True, cache=True)
def top_correlations(f_ptr, f_tok, f_val, t_ptr, t_feat, t_val, d_src, d_dst,
                     sx, sxx, sy, syy, n, k, n_chunks):
    """Per source feature i: the top k destination features by pearson among n_both >= 1.

    Returns (dst [d_src, k] (-1 = empty slot), n_both [d_src, k], r [d_src, k]).
    """
    out_j = np.full((d_src, k), -1, np.int32)
    out_n = np.zeros((d_src, k), np.int64)
    out_r = np.full((d_src, k), np.nan, np.float64)
    for c in nb.prange(n_chunks):
        acc_xy = np.zeros(d_dst, np.float64)
        acc_n = np.zeros(d_dst, np.int64)
        touched = np.empty(d_dst, np.int64)
        for i in range(c, d_src, n_chunks):
            m = 0
            for p in range(f_ptr[i], f_ptr[i + 1]):
                t = f_tok[p]
                x = np.float64(f_val[p])
                for q in range(t_ptr[t], t_ptr[t + 1]):
                    j = t_feat[q]
                    if acc_n[j] == 0:
                        touched[m] = j
                        m += 1
                    acc_n[j] += 1
                    acc_xy[j] += x * np.float64(t_val[q])
            # keep the row's top k in a small sorted buffer: (key desc, j asc),
            # key = pearson, NaN ranking last (-2 is below every correlation)
            top_key = np.full(k, -3.0)
            top_j = np.full(k, -1, np.int64)
            top_r = np.full(k, np.nan)
            for u in range(m):
                j = touched[u]
                r = pearson(n, sx[i], sy[j], sxx[i], syy[j], acc_xy[j])
                kk = -2.0 if np.isnan(r) else r
                w = k - 1
                if kk < top_key[w] or (kk == top_key[w] and j > top_j[w]):
                    continue
                while w > 0 and (kk > top_key[w - 1] or (kk == top_key[w - 1] and j < top_j[w - 1])):
                    top_key[w] = top_key[w - 1]
                    top_j[w] = top_j[w - 1]
                    top_r[w] = top_r[w - 1]
                    w -= 1
                top_key[w] = kk
                top_j[w] = j
                top_r[w] = r
            for u in range(min(k, m)):
                out_j[i, u] = top_j[u]
                out_n[i, u] = acc_n[top_j[u]]
                out_r[i, u] = top_r[u]
            for u in range(m):
                acc_n[touched[u]] = 0
                acc_xy[touched[u]] = 0.0
    return out_j, out_n, out_r

