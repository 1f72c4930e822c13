"""Exact linear assignment (minimum-total-cost one-to-one matching), dense or certified sparse.

Problem: given costs c_ij (n rows, m columns), choose min(n, m) pairs, each row and column at
most once, minimising sum c_ij.  Two solvers return the same optimum:

* ``exact``: the dense float64 matrix and scipy's ``linear_sum_assignment`` (Crouse 2016,
  shortest augmenting paths).  Memory n*m*8 bytes, so only for moderate sizes.
* ``sparse``: screen every row in chunks (one GEMM per chunk for squared distances) keeping its
  k cheapest columns and, per column, the cheapest value; solve the assignment on those
  candidates with their approximate costs (a sparse shortest-augmenting-path solver, Jonker &
  Volgenant 1987 / LAPJVsp with their initialisation, that also returns the LP duals u, v);
  compute float64 costs only for the candidates near tight under those duals, and re-solve
  on them exactly, warm-started.  Then CERTIFY optimality by LP duality: the matching is
  optimal if every reduced cost c_ij - u_i - v_j >= 0 (with v_j <= 0, and v_j = 0 on
  unmatched columns, when n < m).  Other candidates are bounded below by their approximate
  cost minus its error bound; pairs outside the candidate set by their row's k-th candidate
  cost t_i or their column's minimum s_j, so whole rows are certified at once with a
  vectorised test; a row that fails it is checked on the columns its bound leaves open (a
  small GEMM); pairs that violate join the exact edges and the problem is re-solved, until
  no violation is left.  The result is never a silently sub-optimal or partial matching.

Floating point: the screening GEMM runs in float32, or in bfloat16 (``costs.resolve_screen``);
every value it gives, and every float32 recomputation, carries a rigorous error bound
(``costs.CostProvider``), which the certificate (``certificate``) subtracts; candidate edges,
duals and totals are float64.  The coarser screen only means more certificate work.

``auto`` uses ``exact`` when n*m <= ``SolverConfig.dense_limit`` and ``sparse`` otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from saew.compute.matching.certificate import check_prefix, check_rows, uncertified_rows
from saew.compute.matching.costs import CostProvider, DenseCosts
from saew.errors import BadInput

SOLVERS = ("auto", "exact", "sparse")


@dataclass(frozen=True)
class SolverConfig:
    k: int = 128                   # candidate columns kept per row by the screening pass (32k x 32k: 128 beats 32 by 1.2x)
    chunk_rows: int = 2048         # rows per screening GEMM chunk
    dense_limit: int = 10_000_000  # auto: dense exact solver up to n*m entries (~3,072^2: faster there)
    exact_max_bytes: int = 6 << 30  # exact: refuse dense float64 matrices above this
    tol: float = 1e-9              # certificate tolerance, relative to the largest edge cost
    grow: int = 4                  # factor by which a re-screened row's candidate count grows
    cache_bytes: int = 2 << 30     # memory for whole cost rows kept between certificate rounds
    prefix_max: float = 0.125      # check a failing row on its open columns only if <= this share
    screen: str = "auto"           # screening GEMM precision of the vector providers (``resolve_screen``)
    device: str = "cpu"            # where the vector providers' screening GEMM runs (``--device``)


@dataclass
class Assignment:
    rows: np.ndarray          # int64, ascending
    cols: np.ndarray          # int64
    total: float              # sum of the exact (float64) costs of the pairs
    stats: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- public entry
def solve(costs: CostProvider | np.ndarray, solver: str = "auto",
          cfg: SolverConfig = SolverConfig()) -> Assignment:
    """Minimum-cost one-to-one matching of min(n, m) pairs; rows ascending, exact total."""
    if not isinstance(costs, CostProvider):
        costs = DenseCosts(costs)
    if solver not in SOLVERS:
        raise BadInput(f"--solver {solver!r}: expected one of {', '.join(SOLVERS)}")
    if costs.n == 0 or costs.m == 0:
        e = np.zeros(0, dtype=np.int64)
        return Assignment(e, e, 0.0, {"solver": "empty"})
    if costs.n > costs.m:
        r = solve(costs.T, solver, cfg)
        order = np.argsort(r.cols, kind="stable")
        return Assignment(r.cols[order], r.rows[order], r.total, r.stats)
    if solver == "exact" or (solver == "auto" and costs.n * costs.m <= cfg.dense_limit):
        return _solve_dense(costs, cfg)
    return _solve_sparse(costs, cfg)


def _solve_dense(costs: CostProvider, cfg: SolverConfig) -> Assignment:
    from scipy.optimize import linear_sum_assignment

    need = costs.n * costs.m * 8
    if need > cfg.exact_max_bytes:
        raise BadInput(f"--solver exact: a dense {costs.n} x {costs.m} cost matrix needs "
                       f"{need / 2**30:.1f} GB; use --solver auto or sparse (also exact)")
    c = costs.dense()
    r, j = linear_sum_assignment(c)
    total = float(costs.exact(r.astype(np.int64), j.astype(np.int64)).sum())
    return Assignment(r.astype(np.int64), j.astype(np.int64), total, {"solver": "exact"})


def random_bijection(n: int, m: int, seed: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded uniformly random one-to-one matching of min(n, m) pairs (the null model).

    Drawn from ``SeedSequence(seed, spawn_key=(stream,))`` (stream = the source layer), so
    every layer pair gets its own independent, reproducible permutation.
    """
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(stream),)))
    if n <= m:
        return np.arange(n, dtype=np.int64), rng.permutation(m)[:n].astype(np.int64)
    rows = np.sort(rng.permutation(n)[:m]).astype(np.int64)
    return rows, rng.permutation(m).astype(np.int64)


# --------------------------------------------------------------------------- sparse path
def _screen(costs: CostProvider, k: int, chunk: int):
    """One pass over row chunks: per row its k cheapest columns (indices and approximate
    costs, and the k-th value t_i, a lower bound on every other entry of the row), per column
    its minimum s_j."""
    import torch

    n, m = costs.n, costs.m
    cand = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float64)
    t = np.empty(n, dtype=np.float64)
    s = None
    for r0 in range(0, n, chunk):
        blk, off = costs.screen_block(r0, min(n, r0 + chunk))
        vals, idx = blk.topk(k, dim=1, largest=False, sorted=False)
        r1 = r0 + len(idx)
        # .cpu(): a block screened on a device comes back (a no-op for a CPU block)
        cand[r0:r1] = idx.cpu().numpy()
        val[r0:r1] = vals.cpu().double().numpy()
        cm = blk.amin(dim=0).cpu().double()
        if off is not None:  # per-row offsets: exact for the row's values, a bound on columns
            val[r0:r1] += off[:, None]
            cm += float(off.min())
        t[r0:r1] = val[r0:r1].max(axis=1)
        s = cm if s is None else torch.minimum(s, cm)
        del blk
    return cand, val, t, s.numpy()


def _screen_columns(costs: CostProvider, cols: np.ndarray, k: int, s: np.ndarray, chunk: int):
    """The k cheapest rows of each given column, plus every row tied with the k-th (rows,
    cols, approximate costs); s_j raised to the column's k-th value (in place)."""
    import torch

    if len(cols) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    k = min(k, costs.n)
    tc = costs.T
    ii, jj, ww = [], [], []
    for c0 in range(0, len(cols), chunk):
        cc = cols[c0:c0 + chunk]
        blk = tc.rows(cc)
        last = blk.topk(k, dim=1, largest=False, sorted=False)[0].amax(dim=1)
        fc, fr = torch.nonzero(blk <= last[:, None], as_tuple=True)
        ii.append(fr.numpy())
        jj.append(cc[fc.numpy()])
        ww.append(blk[fc, fr].double().numpy())
        s[cc] = np.maximum(s[cc], last.double().numpy())
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(ww)


class _Candidates:
    """Screened edges with approximate costs: |val - c_ij| <= screen_row_err_i +
    screen_col_err_j for ``coarse`` ones (from the screening pass), row_err_i + col_err_j for
    the rest (float32 recomputations).  ``exact`` marks those already in the exact edge set."""

    def __init__(self, n: int, m: int, cand: np.ndarray, val: np.ndarray):
        self.n, self.m = n, m
        self.i = np.repeat(np.arange(n, dtype=np.int64), cand.shape[1])
        self.j = cand.ravel()
        self.val = val.ravel()
        self.exact = np.zeros(len(self.i), dtype=bool)
        self.coarse = np.ones(len(self.i), dtype=bool)  # value from the screening pass
        self.grouped = True  # rows contiguous and ascending, no duplicates

    def extend(self, i: np.ndarray, j: np.ndarray, val: np.ndarray) -> None:
        if len(i):
            self.i = np.concatenate([self.i, i.astype(np.int64)])
            self.j = np.concatenate([self.j, j.astype(np.int64)])
            self.val = np.concatenate([self.val, val])
            self.exact = np.concatenate([self.exact, np.zeros(len(i), dtype=bool)])
            self.coarse = np.concatenate([self.coarse, np.zeros(len(i), dtype=bool)])
            self.grouped = False

    def near(self, u, v, costs: CostProvider, tol) -> np.ndarray:
        """Candidates not yet exact whose approximate reduced cost is <= 2 (row_err_i +
        col_err_j) + tol (the screening pass's error bound for its own values): a superset of
        those whose cost minus its error bound is not certified (>= -tol), with room for the
        duals to move."""
        from saew.compute.matching.pair_kernels import near_edges

        return near_edges(self.val, self.i, self.j, u, v, costs.row_err, costs.col_err,
                          costs.screen_row_err, costs.screen_col_err, self.coarse, tol,
                          self.exact)

    def csr(self):
        """(indptr, cols, approximate costs), one edge per (row, col)."""
        if self.grouped:
            order = slice(None)
        else:
            _, order = np.unique(self.i * self.m + self.j, return_index=True)
        rows = self.i[order]
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n), out=indptr[1:])
        return indptr, self.j[order], self.val[order]


class _Edges:
    """The exact edge set, as sorted unique (row, col) codes with float64 costs."""

    def __init__(self, m: int):
        self.m = m
        self.code = np.zeros(0, dtype=np.int64)
        self.cost = np.zeros(0, dtype=np.float64)

    def add(self, costs: CostProvider, i: np.ndarray, j: np.ndarray) -> int:
        code = np.unique(i.astype(np.int64) * self.m + j.astype(np.int64))
        code = code[~np.isin(code, self.code, assume_unique=True)]
        if len(code) == 0:
            return 0
        c = costs.exact(code // self.m, code % self.m)
        allc = np.concatenate([self.code, code])
        allw = np.concatenate([self.cost, c])
        o = np.argsort(allc, kind="stable")
        self.code, self.cost = allc[o], allw[o]
        return len(code)

    def csr(self, n: int):
        rows = self.code // self.m
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return indptr, self.code % self.m, self.cost


def _solve_sparse(costs: CostProvider, cfg: SolverConfig) -> Assignment:
    """Screen, solve on approximate candidate costs, then certify an exact solve.

    1. ``_screen``: per row its k cheapest columns by the screening pass's costs (float32 or
       bfloat16, ``CostProvider.screen_block``).
    2. Solve the assignment on those candidates with their approximate costs (Jonker-Volgenant
       start when square); if they hold no full matching, widen the stuck rows and repeat.
    3. Exact edge set E: the candidates whose approximate reduced cost is within twice their
       error bound of 0 (square), or all candidates (rectangular, where duals must stay
       v <= 0); float64 costs only for those.  Solve on E, warm-started from the approximate
       duals and matching (square).
    4. Certify against every pair: candidates outside E by their approximate cost minus its
       error bound, the rest by the row and column bounds t_i, s_j (``uncertified_rows``).
       A row that fails is checked on the few columns its bound leaves open
       (``check_prefix``, one small GEMM), or recomputed whole when they are many
       (``check_rows``, which also widens its candidates).  Pairs that violate, or are near
       enough to, join E; re-solve warm; repeat until every pair is certified.
    """
    import time

    clock = time.perf_counter
    t0 = clock()
    n, m = costs.n, costs.m
    square = n == m
    k = min(cfg.k, m)
    cand, val, t, s = _screen(costs, k, cfg.chunk_rows)
    t1 = clock()
    kr = np.full(n, k, dtype=np.int64)          # candidates screened per row
    bounded = _Candidates(n, m, cand, val)
    del cand, val
    cache: dict = {}  # row -> its approximate cost row, for rows checked more than once
    # columns in nobody's top k: give each its k cheapest rows (a GEMM on those columns only)
    # and raise its lower bound s_j to its k-th cheapest entry
    uncovered = np.setdiff1d(np.arange(m), bounded.j, assume_unique=False)
    bounded.extend(*_screen_columns(costs, uncovered, k, s, cfg.chunk_rows))
    stats = {"solver": "sparse", "k": k, "rounds": 0, "rescreened_rows": 0, "added_edges": 0,
             "screened_columns": int(len(uncovered)), "expanded_rows": 0, "prefix_rows": 0,
             "t_screen": t1 - t0, "t_approx": 0.0, "t_solve": 0.0, "t_check": 0.0,
             "t_edges": 0.0}
    # error bounds of the values behind t_i (the screen's, or float32 once a row is recomputed)
    # and s_j (the screen's; the column screen's are smaller)
    re, sre, sce = costs.row_err, costs.screen_row_err, costs.screen_col_err
    t_err = sre.copy()

    def widen(tree, u, v):  # no full matching among the edges: widen the stuck trees' rows
        grow = np.flatnonzero(tree)
        grow = grow[kr[grow] < m]
        if len(grow) == 0:
            raise RuntimeError("assignment: no full matching even on complete rows")
        stats["expanded_rows"] += len(grow)
        _, ci, cj, cv, _, _ = check_rows(costs, grow, u, v, np.inf, kr, t, cache, chunk_rows=cfg.chunk_rows,
                                           grow=cfg.grow, cache_bytes=cfg.cache_bytes)
        t_err[grow] = re[grow]
        bounded.extend(ci, cj, cv)
        return ci, cj

    edges = _Edges(m)
    col4row = v = None
    if square:  # 2. the approximate problem on the candidates, then E: its near-tight edges
        t2 = clock()
        while True:
            col4row, u, v, status, tree = _sparse_sap(*bounded.csr(), m, "jv")
            if status == 0:
                break
            widen(tree, u, v)
        stats["t_approx"] = clock() - t2
        t2 = clock()
        near = bounded.near(u, v, costs, cfg.tol * max(1.0, float(np.abs(bounded.val).max())))
        edges.add(costs, bounded.i[near], bounded.j[near])
        edges.add(costs, np.arange(n, dtype=np.int64), col4row)  # the approximate optimum
        bounded.exact |= near
        del near
    else:  # rectangular: E = every candidate, solved cold (keeps v <= 0, v = 0 on free columns)
        t2 = clock()
        edges.add(costs, bounded.i, bounded.j)
        bounded.exact[:] = True
    stats["t_edges"] += clock() - t2

    while True:
        stats["rounds"] += 1
        indptr, indices, w = edges.csr(n)
        t2 = clock()
        col4row, u, v, status, tree = _sparse_sap(indptr, indices, w, m,
                                                   "warm" if square else "cold", v, col4row)
        stats["t_solve"] += clock() - t2
        if status != 0:
            ci, cj = widen(tree, u, v)
            edges.add(costs, ci, cj)
            bounded.exact[len(bounded.exact) - len(ci):] = True
            continue
        t2 = clock()
        tol = cfg.tol * max(1.0, float(np.abs(w).max()))
        # candidates outside E: certified if approximate cost - error bound - u_i - v_j >= -tol;
        # the near ones (a superset of those that are not) join E
        fail = np.flatnonzero(bounded.near(u, v, costs, tol))
        added = edges.add(costs, bounded.i[fail], bounded.j[fail])
        bounded.exact[fail] = True
        # every other pair: the row and column bounds, else the whole row
        bad, order, width = uncertified_rows(t, s, u, v, t_err, sre, sce, tol, widths=True)
        nviol = 0
        few = width <= cfg.prefix_max * m  # open columns few enough for a column subset
        if few.any():  # certified once no near pair is left outside E
            stats["prefix_rows"] += int(few.sum())
            added += edges.add(costs, *check_prefix(costs, bad[few], order, width[few], u, v,
                                                    tol, cfg.chunk_rows))
        if (~few).any():
            stats["rescreened_rows"] += int((~few).sum())
            nv, ci, cj, cv, vi, vj = check_rows(costs, bad[~few], u, v, tol, kr, t, cache,
                                                chunk_rows=cfg.chunk_rows, grow=cfg.grow,
                                                cache_bytes=cfg.cache_bytes)
            t_err[bad[~few]] = re[bad[~few]]
            nviol += nv
            bounded.extend(ci, cj, cv)
            added += edges.add(costs, vi, vj)
        stats["added_edges"] += added
        stats["t_check"] += clock() - t2
        if added == 0 and nviol == 0:
            break  # every pair is certified against these duals
    if not square:  # the rectangular dual also needs v <= 0, and v = 0 on unmatched columns
        free = np.ones(m, dtype=bool)
        free[col4row] = False
        if v.max(initial=0.0) > tol or np.abs(v[free]).max(initial=0.0) > tol:
            raise RuntimeError("assignment: rectangular duals out of sign (solver bug)")
    rows = np.arange(n, dtype=np.int64)
    cols = col4row.astype(np.int64)
    total = float(costs.exact(rows, cols).sum())
    stats["edges"] = int(len(edges.code))
    stats["candidates"] = int(len(bounded.i))
    stats["dual_gap"] = float(total - (u.sum() + v.sum()))
    return Assignment(rows, cols, total, stats)


def _sparse_sap(indptr, indices, cost, m, start="cold", v0=None, col4row0=None):
    from saew.compute.matching.lap_sparse import sparse_sap

    return sparse_sap(indptr, indices, cost, m, start, v0, col4row0)  # casts without copies
