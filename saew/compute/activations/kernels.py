"""Compiled (numba) kernels of the activation statistics: sparse products row by row.

Imported lazily by ``coactivation``, ``correlate`` and ``incidence`` (numba is slow to
import, and ``saew --help`` imports every step module). Compiled code is cached on disk.
Every kernel works on a tokens x features activity matrix held both ways (see
``incidence.Incidence``) and runs over chunks of features on every core (``prange``), each
chunk with its own dense accumulator row of length d_sae that is reset after each row.

Token shards: ``merge_counts`` adds two shards' co-activation counts (integers: exact in any
order); ``feature_sums``, ``cross_rows`` and ``top_correlations`` take the running sums of the
earlier token blocks and continue them with the same float additions, in the same token order,
as one pass over every token, so a sharded layer gives the unsharded figures bit for bit.
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
            row = np.sort(touched[:m])   # b ascending (add_counts merges rows sorted by b)
            for u in range(m):
                b = row[u]
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


@nb.njit(cache=True)
def feature_sums(feat, val, cnt, s, ss):
    """Carry-in per-feature sums over entries in the given order: cnt[f] += 1, s[f] += x,
    ss[f] += x^2 (float64), for x = val[p] of each entry p with feature feat[p].

    Called block after block (token-major order within each block, blocks in ascending token
    order), the float sums are built by the same additions in the same order as one call over
    all the entries, so a sharded layer gives bit-identical sums.
    """
    for p in range(feat.shape[0]):
        f = feat[p]
        x = np.float64(val[p])
        cnt[f] += 1
        s[f] += x
        ss[f] += x * x


@nb.njit(parallel=True, cache=True)
def cross_row_sizes(f_ptr, f_tok, t_ptr, t_feat, d_src, d_dst, p_ptr, p_j, n_chunks):
    """Symbolic pass of ``cross_rows``: per source feature i, the number of destination
    features j in its previous row (p_ptr/p_j) or sharing a token of this block with it."""
    sizes = np.zeros(d_src, np.int64)
    for c in nb.prange(n_chunks):
        mark = np.zeros(d_dst, np.uint8)
        touched = np.empty(d_dst, np.int32)
        for i in range(c, d_src, n_chunks):
            m = 0
            for q in range(p_ptr[i], p_ptr[i + 1]):
                j = p_j[q]
                mark[j] = 1
                touched[m] = j
                m += 1
            for p in range(f_ptr[i], f_ptr[i + 1]):
                t = f_tok[p]
                for q in range(t_ptr[t], t_ptr[t + 1]):
                    j = t_feat[q]
                    if mark[j] == 0:
                        mark[j] = 1
                        touched[m] = j
                        m += 1
            for u in range(m):
                mark[touched[u]] = 0
            sizes[i] = m
    return sizes


@nb.njit(cache=True, inline="always")
def carry_row(i, f_ptr, f_tok, f_val, t_ptr, t_feat, t_val, p_ptr, p_j, p_n, p_xy, acc_n, acc_xy,
              touched):
    """Source row i's running (n_both, sxy) after one more token block, in the dense
    accumulators acc_n / acc_xy (zero on entry): each pair starts from its sums over the earlier
    blocks (CSR row p_ptr/p_j/p_n/p_xy, j ascending; empty for the first block) and adds x y
    token by token in ascending token order, the additions one unsharded pass makes:

        n_both(i, j) += 1,  sxy(i, j) += x_i(t) y_j(t)   for every token t of the block where both > 0

    Returns m: touched[:m] are the row's j, the previous ones first (ascending, m0 = p_ptr[i + 1]
    - p_ptr[i] of them), then the new ones in the order met. The one accumulation of
    ``cross_rows`` and ``top_correlations``."""
    m = 0
    for q in range(p_ptr[i], p_ptr[i + 1]):
        j = p_j[q]
        touched[m] = j
        m += 1
        acc_n[j] = p_n[q]
        acc_xy[j] = p_xy[q]
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
    return m


@nb.njit(parallel=True, cache=True)
def cross_rows(f_ptr, f_tok, f_val, t_ptr, t_feat, t_val, d_src, d_dst, p_ptr, p_j, p_n, p_xy,
               n_chunks, offsets, out_j, out_n, out_xy):
    """Numeric pass: the running sums (n_both, sxy) of every pair (i, j) after one more token
    block (``carry_row``), as CSR rows at offsets[i] with j ascending: the previous row's j
    (already ascending) merged with the block's new j (sorted), no sort of the whole row."""
    for c in nb.prange(n_chunks):
        acc_xy = np.zeros(d_dst, np.float64)
        acc_n = np.zeros(d_dst, np.int64)
        touched = np.empty(d_dst, np.int64)
        for i in range(c, d_src, n_chunks):
            m = carry_row(i, f_ptr, f_tok, f_val, t_ptr, t_feat, t_val, p_ptr, p_j, p_n, p_xy,
                          acc_n, acc_xy, touched)
            m0 = p_ptr[i + 1] - p_ptr[i]
            new = np.sort(touched[m0:m])
            o = offsets[i]
            a = 0
            b = 0
            while a < m0 or b < m - m0:
                if b >= m - m0 or (a < m0 and touched[a] < new[b]):
                    j = touched[a]
                    a += 1
                else:
                    j = new[b]
                    b += 1
                out_j[o] = j
                out_n[o] = acc_n[j]
                out_xy[o] = acc_xy[j]
                acc_n[j] = 0
                acc_xy[j] = 0.0
                o += 1


@nb.njit(parallel=True, cache=True)
def top_correlations(f_ptr, f_tok, f_val, t_ptr, t_feat, t_val, d_src, d_dst,
                     sx, sxx, sy, syy, n, k, n_chunks, p_ptr, p_j, p_n, p_xy):
    """Per source feature i: the top k destination features by pearson among n_both >= 1.

    sxy and n_both of pair (i, j) start from its running sums over the earlier token blocks
    (CSR p_ptr/p_j/p_n/p_xy, from ``cross_rows``; all empty for a layer read in one block)
    and add x y over the tokens of this block in ascending token order (``carry_row``).
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
            m = carry_row(i, f_ptr, f_tok, f_val, t_ptr, t_feat, t_val, p_ptr, p_j, p_n, p_xy,
                          acc_n, acc_xy, touched)
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


@nb.njit(cache=True)
def union_size(a1, b1, a2, b2):
    """The number of distinct (a, b) pairs of two lists each sorted by (a, b) with unique pairs."""
    i = j = o = 0
    while i < a1.shape[0] and j < a2.shape[0]:
        if a1[i] == a2[j] and b1[i] == b2[j]:
            i += 1
            j += 1
        elif a1[i] < a2[j] or (a1[i] == a2[j] and b1[i] < b2[j]):
            i += 1
        else:
            j += 1
        o += 1
    return o + (a1.shape[0] - i) + (a2.shape[0] - j)


@nb.njit(cache=True)
def merge_counts(a1, b1, n1, a2, b2, n2):
    """Sum of two pair-count lists, each sorted by (a, b) with unique pairs: the union of the
    pairs, sorted by (a, b), n added where a pair is in both (integer counts: exact). The output
    is allocated at its exact size (``union_size``): memory is the two inputs and the sum."""
    size = union_size(a1, b1, a2, b2)
    oa = np.empty(size, np.int32)
    ob = np.empty(size, np.int32)
    on = np.empty(size, np.int64)
    i = j = o = 0
    while i < a1.shape[0] and j < a2.shape[0]:
        if a1[i] < a2[j] or (a1[i] == a2[j] and b1[i] < b2[j]):
            oa[o] = a1[i]
            ob[o] = b1[i]
            on[o] = n1[i]
            i += 1
        elif a1[i] == a2[j] and b1[i] == b2[j]:
            oa[o] = a1[i]
            ob[o] = b1[i]
            on[o] = n1[i] + n2[j]
            i += 1
            j += 1
        else:
            oa[o] = a2[j]
            ob[o] = b2[j]
            on[o] = n2[j]
            j += 1
        o += 1
    while i < a1.shape[0]:
        oa[o] = a1[i]
        ob[o] = b1[i]
        on[o] = n1[i]
        i += 1
        o += 1
    while j < a2.shape[0]:
        oa[o] = a2[j]
        ob[o] = b2[j]
        on[o] = n2[j]
        j += 1
        o += 1
    return oa, ob, on
