"""Sparse linear assignment by shortest augmenting paths, returning the LP duals (numba).

Jonker & Volgenant (1987), "A shortest augmenting path algorithm for dense and sparse linear
assignment problems" (LAPJVsp), without the JV initialisation heuristics: for each row in
turn, Dijkstra on reduced costs c_ij - u_i - v_j >= 0 over the candidate edges (CSR) finds the
cheapest augmenting path to a free column; the duals are then updated so every edge stays
dual feasible and the matched edges tight (Crouse 2016, the algorithm behind scipy's
``linear_sum_assignment``, sparse).  For n <= m rows, v_j <= 0 everywhere and v_j = 0 on the
columns left free, so (u, v) certifies the rectangular optimum too.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _push(hk, hc, size, key, col):
    p = size
    hk[p] = key
    hc[p] = col
    while p > 0:
        q = (p - 1) >> 1
        if hk[q] <= hk[p]:
            break
        hk[p], hk[q] = hk[q], hk[p]
        hc[p], hc[q] = hc[q], hc[p]
        p = q
    return size + 1


@njit(cache=True, nogil=True)
def _pop(hk, hc, size):
    key, col = hk[0], hc[0]
    size -= 1
    hk[0] = hk[size]
    hc[0] = hc[size]
    p = 0
    while True:
        l = 2 * p + 1
        if l >= size:
            break
        r = l + 1
        c = r if (r < size and hk[r] < hk[l]) else l
        if hk[p] <= hk[c]:
            break
        hk[p], hk[c] = hk[c], hk[p]
        hc[p], hc[c] = hc[c], hc[p]
        p = c
    return key, col, size


@njit(cache=True, nogil=True)
def _sap(indptr, indices, cost, m):
    n = indptr.shape[0] - 1
    nnz = indices.shape[0]
    u = np.zeros(n)
    v = np.zeros(m)
    col4row = np.full(n, -1, np.int64)
    row4col = np.full(m, -1, np.int64)
    tree = np.zeros(n, np.bool_)
    nstuck = 0
    for i in range(n):
        if indptr[i + 1] == indptr[i]:
            tree[i] = True
            nstuck += 1
            continue
        mn = np.inf
        for p in range(indptr[i], indptr[i + 1]):
            if cost[p] < mn:
                mn = cost[p]
        u[i] = mn
    dist = np.full(m, np.inf)
    pred = np.full(m, -1, np.int64)
    done = np.zeros(m, np.bool_)
    touched = np.empty(m, np.int64)
    scanned = np.empty(m, np.int64)
    hk = np.empty(nnz + 1)
    hc = np.empty(nnz + 1, np.int64)
    for s in range(n):
        if indptr[s + 1] == indptr[s]:
            continue
        ntouch = 0
        nscan = 0
        size = 0
        i = s
        di = 0.0
        sink = -1
        big = 0.0
        while True:
            ui = u[i]
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if done[j]:
                    continue
                nd = di + cost[p] - ui - v[j]
                if nd < dist[j]:
                    if dist[j] == np.inf:
                        touched[ntouch] = j
                        ntouch += 1
                    dist[j] = nd
                    pred[j] = i
                    size = _push(hk, hc, size, nd, j)
            j = -1
            while size > 0:
                d, jj, size = _pop(hk, hc, size)
                if done[jj] or d > dist[jj]:
                    continue
                j = jj
                big = d
                break
            if j < 0:  # no augmenting path: mark the rows of the Hungarian tree, go on
                break
            if row4col[j] < 0:
                sink = j
                break
            done[j] = True
            scanned[nscan] = j
            nscan += 1
            i = row4col[j]
            di = big
        if sink < 0:
            nstuck += 1
            tree[s] = True
            for t in range(nscan):
                tree[row4col[scanned[t]]] = True
            for t in range(ntouch):
                jj = touched[t]
                dist[jj] = np.inf
                done[jj] = False
            continue
        # dual update: rows reached at distance d_r gain D - d_r, scanned columns lose it
        u[s] += big
        for t in range(nscan):
            j = scanned[t]
            delta = big - dist[j]
            u[row4col[j]] += delta
            v[j] -= delta
        # augment along the predecessor chain
        j = sink
        while True:
            i = pred[j]
            row4col[j] = i
            nxt = col4row[i]
            col4row[i] = j
            if i == s:
                break
            j = nxt
        for t in range(ntouch):
            jj = touched[t]
            dist[jj] = np.inf
            done[jj] = False
    return col4row, u, v, nstuck, tree


def sparse_sap(indptr: np.ndarray, indices: np.ndarray, cost: np.ndarray, m: int):
    """Min-cost assignment of every row (n <= m) on CSR candidate edges.

    Returns (col4row, u, v, status, tree): status 0 = solved, with duals u (rows), v (cols)
    such that c_ij - u_i - v_j >= 0 on every edge (up to rounding), = 0 on matched edges,
    v <= 0 and v = 0 on free columns; status k > 0 = k rows found no augmenting path (no full
    matching among the edges), and the boolean ``tree`` marks the rows of their Hungarian
    trees, whose candidate sets must grow.
    """
    return _sap(np.ascontiguousarray(indptr, dtype=np.int64),
                np.ascontiguousarray(indices, dtype=np.int64),
                np.ascontiguousarray(cost, dtype=np.float64), int(m))


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


def pair_sqdist(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """||a_i - b_j||^2 for paired rows, accumulated in float64 (float32 inputs are exact)."""
    out = np.empty(len(i), dtype=np.float64)
    if len(i):
        _sqdist_pairs(a, b, np.ascontiguousarray(i, dtype=np.int64),
                      np.ascontiguousarray(j, dtype=np.int64), out)
    return out


def pair_dot(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """a_i . b_j for paired rows, accumulated in float64."""
    out = np.empty(len(i), dtype=np.float64)
    if len(i):
        _dot_pairs(a, b, np.ascontiguousarray(i, dtype=np.int64),
                   np.ascontiguousarray(j, dtype=np.int64), out)
    return out
