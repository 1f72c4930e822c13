"""The LP-duality certificate of the sparse solver: which pairs may still violate c_ij - u_i - v_j >= -tol.

For duals (u, v) of a solve on the exact edge set, a pair outside it is certified by a lower
bound on its cost: a candidate by its approximate cost minus its error bound, any other pair
by its row's k-th candidate cost t_i or its column's minimum s_j (``uncertified_rows``, all
rows at once).  A row that fails is checked on the columns its bound leaves open
(``check_prefix``, one small GEMM) or recomputed whole (``check_rows``, which also widens its
candidates); ``violations`` confirms the uncertain pairs of a block in float64.
"""
from __future__ import annotations

import numpy as np

from saew.compute.matching.costs import CostProvider


def uncertified_rows(t, s, u, v, t_err, row_err, col_err, tol, widths: bool = False):
    """Rows holding a pair whose reduced cost is not proven >= -tol by the bounds.

    A non-candidate pair has c_ij >= t_i - t_err_i - col_err_j (the values behind t_i rank the
    row) and c_ij >= s_j - row_err_i - col_err_j (the screen ranks the column).  It is
    certified if t_i - t_err_i - u_i >= v_j + col_err_j - tol  (row bound)  or
    s_j - v_j - col_err_j >= u_i + row_err_i - tol  (column bound).  Row i fails iff
    max{v_j + col_err_j : s_j - v_j - col_err_j < u_i + row_err_i - tol} > t_i - t_err_i - u_i + tol,
    found for all rows at once with a sort and a prefix maximum.  With ``widths``, also
    returns the columns by descending v_j + col_err_j and, per failing row, how many of them
    lead that order with v_j + col_err_j > t_i - t_err_i - u_i + tol: only those can hold
    its violators.
    """
    a = t - t_err - u + tol
    w = v + col_err
    b = s - v - col_err
    order = np.argsort(b, kind="stable")
    b_sorted = b[order]
    pmax = np.maximum.accumulate(w[order])
    cnt = np.searchsorted(b_sorted, u + row_err - tol, side="left")
    worst = np.where(cnt > 0, pmax[np.maximum(cnt - 1, 0)], -np.inf)
    bad = np.flatnonzero(worst > a)
    if not widths:
        return bad
    by_w = np.argsort(-w, kind="stable")
    width = np.searchsorted(-w[by_w], -a[bad], side="left")
    return bad, by_w, width


def cached_rows(costs: CostProvider, rr: np.ndarray, cache: dict, budget: int):
    """Approximate cost rows, kept in memory (up to ``budget`` bytes) for later rounds."""
    import torch

    miss = np.array([r for r in rr.tolist() if r not in cache], dtype=np.int64)
    if len(miss) == len(rr):
        blk = costs.rows(rr)
    else:
        fresh = costs.rows(miss) if len(miss) else None
        pos = {r: q for q, r in enumerate(miss.tolist())}
        blk = torch.stack([cache[r] if r in cache else fresh[pos[r]] for r in rr.tolist()])
    if len(miss):
        used = sum(x.numel() * x.element_size() for x in cache.values())
        per = blk[0].numel() * blk.element_size()
        room = max(0, (budget - used) // max(1, per))
        where = {r: q for q, r in enumerate(rr.tolist())}
        for r in miss.tolist()[:room]:
            cache[r] = blk[where[r]].clone()
    return blk


def check_rows(costs: CostProvider, rows_: np.ndarray, u, v, tol, kr, t, cache: dict, *,
               chunk_rows: int, grow: int, cache_bytes: int):
    """Recompute whole rows: find pairs whose exact reduced cost c_ij - u_i - v_j < -tol, and
    widen each row's candidate set to its ``grow`` x kr_i cheapest columns (raising t_i), plus
    every column tied with the last of them (identical features: without the ties, rows that
    all rank the same tied columns first could not be matched among the candidates).

    Pairs not provably >= -tol from the approximate block (error bounds subtracted) are checked
    in float64 (``violations``); of the violators, each row keeps its kr_i most negative.
    Returns (number of violations, candidate rows, cols, approximate costs, violator rows,
    cols).  ``kr`` and ``t`` are updated in place.
    """
    import torch

    m = costs.m
    nviol = 0
    out_i, out_j, out_w, bad_i, bad_j = [], [], [], [], []
    step = max(1, min(chunk_rows, (1 << 25) // max(1, m)))
    for c0 in range(0, len(rows_), step):
        rr = rows_[c0:c0 + step]
        blk = cached_rows(costs, rr, cache, cache_bytes)
        newk = np.minimum(kr[rr] * grow, m)
        kk = int(newk.max())
        vals = blk.topk(kk, dim=1, largest=False, sorted=True)[0]
        last = vals[np.arange(len(rr)), newk - 1]
        fi, fj = torch.nonzero(blk <= last[:, None], as_tuple=True)
        out_i.append(rr[fi.numpy()])
        out_j.append(fj.numpy())
        out_w.append(blk[fi, fj].double().numpy())
        t[rr] = last.double().numpy()
        if np.isfinite(tol):
            bi, bj, rv = violations(costs, blk, rr, None, u, v, tol)
            del blk
            if len(bi):
                nviol += len(bi)
                o = np.lexsort((rv, bi))
                bi, bj = bi[o], bj[o]
                first = np.searchsorted(bi, bi, side="left")
                rank = np.arange(len(bi)) - first
                sel = rank < kr[bi]
                bad_i.append(bi[sel])
                bad_j.append(bj[sel])
        kr[rr] = newk
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
    return (nviol, cat(out_i, np.int64), cat(out_j, np.int64), cat(out_w, np.float64),
            cat(bad_i, np.int64), cat(bad_j, np.int64))


def violations(costs: CostProvider, blk, rr: np.ndarray, cols: np.ndarray | None, u, v, tol):
    """Pairs of an approximate block (rows ``rr`` x ``cols``, all columns if None) whose exact
    reduced cost c_ij - u_i - v_j is < -tol: those below even with the error bound, plus, in
    rows without such a sure violation, those within it that float64 costs confirm (a row with
    a sure one is not certified anyway, and is checked again after the next solve).
    Returns (rows, cols, approximate reduced costs)."""
    import torch

    red = blk.double()
    vv = v + costs.col_err
    red -= torch.from_numpy(vv if cols is None else vv[cols])[None, :]
    thr = torch.from_numpy(u[rr] + costs.row_err[rr] - tol)
    fi, fj = torch.nonzero(red < thr[:, None], as_tuple=True)  # not provably >= -tol
    if len(fi) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    rv = red[fi, fj].numpy()
    del red
    i = rr[fi.numpy()]
    j = fj.numpy() if cols is None else cols[fj.numpy()]
    margin = 2.0 * (costs.row_err[i] + costs.col_err[j])
    viol = rv + margin < thr.numpy()[fi.numpy()]  # a violation even at the error bound
    unsure = np.flatnonzero(~viol & ~np.isin(i, i[viol]))
    if len(unsure):
        rc = costs.exact(i[unsure], j[unsure]) - u[i[unsure]] - v[j[unsure]]
        viol[unsure[rc < -tol]] = True
    return i[viol], j[viol], rv[viol]


def check_prefix(costs: CostProvider, rows_: np.ndarray, order: np.ndarray, width: np.ndarray,
                 u, v, tol, chunk_rows: int):
    """Check rows against the only columns their bound leaves open: row i's non-candidate
    pairs are certified for every column outside ``order[:width_i]`` (the columns by
    descending v_j + col_err_j), so one GEMM of the rows by ``order[:max width]`` finds every
    possible violator.  Returns the pairs there whose approximate reduced cost is within
    2 (row_err_i + col_err_j) + tol of 0 (rows, cols), for the exact edges: every violator
    and the pairs too close to tell without float64 costs.  The others are certified."""
    import torch

    out_i, out_j = [], []
    cols = order[: int(width.max())]
    step = max(1, min(chunk_rows, (1 << 24) // max(1, len(cols))))
    for c0 in range(0, len(rows_), step):
        rr = rows_[c0:c0 + step]
        red = costs.sub(rr, cols).double()
        red -= torch.from_numpy(v[cols] + 2.0 * costs.col_err[cols])[None, :]
        thr = torch.from_numpy(u[rr] + 2.0 * costs.row_err[rr] + tol)
        fi, fj = torch.nonzero(red <= thr[:, None], as_tuple=True)
        del red
        fi, fj = fi.numpy(), fj.numpy()
        bi, bj = rr[fi], cols[fj]
        keep = fj < width[c0:c0 + step][fi]
        out_i.append(bi[keep])
        out_j.append(bj[keep])
    return np.concatenate(out_i), np.concatenate(out_j)


