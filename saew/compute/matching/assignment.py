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

Floating point: the screening GEMM runs in float32, or in bfloat16 (``resolve_screen``: on CPUs
with native bf16 dot products, about 2.4x faster); every value it gives, and every float32
recomputation, carries a rigorous error bound (``CostProvider``: row_err_i + col_err_j, and
the coarser screen_row_err_i + screen_col_err_j), which the certificate subtracts; candidate
edges, duals and totals are float64.  The coarser screen only means more certificate work.

``auto`` uses ``exact`` when n*m <= ``SolverConfig.dense_limit`` and ``sparse`` otherwise.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from saew.errors import BadInput

SOLVERS = ("auto", "exact", "sparse")
SCREENS = ("auto", "float32", "bfloat16")
U32 = 2.0 ** -24  # unit roundoff of float32


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


@dataclass
class Assignment:
    rows: np.ndarray          # int64, ascending
    cols: np.ndarray          # int64
    total: float              # sum of the exact (float64) costs of the pairs
    stats: dict = field(default_factory=dict)


def _gamma(d: int) -> float:
    """gamma_d = d u / (1 - d u) for float32 (Higham, sec. 3.1)."""
    return d * U32 / (1 - d * U32)


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def _bf16_gemm_accumulates_in_float32() -> bool:
    """The bfloat16 screening bound assumes torch's CPU bf16 GEMM accumulates in float32: a
    dot product of 4,096 ones is 4,096 then (bfloat16 accumulation stalls at 256), and a
    random product stays within the stated bound."""
    import torch

    ones = torch.ones(1, 4096, dtype=torch.bfloat16)
    if float(torch.mm(ones, ones.T)) != 4096.0:
        return False
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 1537, generator=g).to(torch.bfloat16)
    b = torch.randn(96, 1537, generator=g).to(torch.bfloat16)
    exact = a.double() @ b.double().T
    got = torch.mm(a, b.T).double()
    d = a.shape[1]
    bound = (2.0 ** -8 + d * U32 * 1.01) * (a.double().abs() @ b.double().abs().T)
    return bool(((got - exact).abs() <= bound).all())


def resolve_screen(screen: str) -> str:
    """``auto``: bfloat16 where the CPU has native bf16 dot products (AVX512-BF16 or AMX; about
    2.4x a float32 GEMM here) and torch's bf16 GEMM accumulates in float32, else float32.  The
    matching is exact either way; only the screening bound (hence the certificate's work)
    differs."""
    if screen not in SCREENS:
        raise BadInput(f"--screen {screen!r}: expected one of {', '.join(SCREENS)}")
    if screen == "float32":
        return screen
    ok = _bf16_gemm_accumulates_in_float32()
    if screen == "bfloat16" and not ok:
        raise BadInput("--screen bfloat16: this torch's bfloat16 GEMM does not accumulate in "
                       "float32, so its error bound does not hold; use --screen float32")
    return "bfloat16" if ok and (screen == "bfloat16" or _cpu_has_bf16()) else "float32"


# --------------------------------------------------------------------------- cost providers
class CostProvider:
    """Costs of an n x m problem, read by blocks of rows.

    ``block(r0, r1)`` / ``rows(idx)``: approximate costs as a torch tensor (float32 or float64)
    with |approx_ij - exact_ij| <= row_err[i] + col_err[j];  ``screen_block(r0, r1)``: the
    screening pass's costs as (block, per-row offset or None): block_ij + offset_i, possibly
    coarser, within screen_row_err[i] + screen_col_err[j];
    ``exact(i, j)``: float64 costs of pairs; ``dense()``: the full float64 matrix; ``T``: the
    transposed problem.
    """
    n: int
    m: int
    row_err: np.ndarray
    col_err: np.ndarray

    def block(self, r0: int, r1: int):
        return self.rows(np.arange(r0, r1))

    def screen_block(self, r0: int, r1: int):
        return self.block(r0, r1), None

    @property
    def screen_row_err(self) -> np.ndarray:
        return self.row_err

    @property
    def screen_col_err(self) -> np.ndarray:
        return self.col_err

    def rows(self, idx: np.ndarray):
        raise NotImplementedError

    def sub(self, idx: np.ndarray, cols: np.ndarray):
        """Approximate costs of rows ``idx`` x columns ``cols`` (same error bound)."""
        return self.rows(idx)[:, np.asarray(cols, dtype=np.int64)]

    def exact(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def T(self) -> "CostProvider":
        raise NotImplementedError


class DenseCosts(CostProvider):
    """A cost matrix held in memory (float64; exact, no error bound)."""

    def __init__(self, c: np.ndarray):
        import torch

        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 2:
            raise ValueError("cost matrix must be 2-D")
        if not np.isfinite(c).all():
            raise ValueError("cost matrix holds NaN or Inf")
        self.c = c
        self.t = torch.from_numpy(c)
        self.n, self.m = c.shape
        self.row_err = np.zeros(self.n)
        self.col_err = np.zeros(self.m)

    def block(self, r0, r1):
        return self.t[r0:r1]

    def rows(self, idx):
        return self.t[np.asarray(idx, dtype=np.int64)]

    def exact(self, i, j):
        return self.c[i, j]

    def dense(self):
        return self.c

    @property
    def T(self):
        return DenseCosts(self.c.T)


class SqEuclidCosts(CostProvider):
    """c_ij = scale * ||a_i - b_j||^2 for row vectors a (n x d) and b (m x d).

    Blocks are one float32 GEMM each: |a|^2 + |b|^2 - 2 a.b.  Error bound (Higham, Accuracy
    and Stability of Numerical Algorithms, sec. 3.1): |fl(a.b) - a.b| <= gamma_d |a| |b| with
    gamma_d = d u / (1 - d u), and 2|a||b| <= |a|^2 + |b|^2, so with the additions
    |c32_ij - c_ij| <= (d + 4) u' (|a_i|^2 + |b_j|^2) * scale (u' = 1.01 u, margin for gamma_d).
    ``screen``: precision of ``screen_block`` (``resolve_screen``; bfloat16 bound in
    ``_set_screen_err``).
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, scale: float = 1.0,
                 norms: tuple[np.ndarray, np.ndarray] | None = None, screen: str = "float32"):
        import torch

        from saew.compute.matching.lap_sparse import row_sqnorms

        # the bf16 bound is stated for unit scale
        self.screen = resolve_screen(screen) if scale == 1.0 else resolve_screen("float32")
        a = np.ascontiguousarray(a, dtype=np.float32)
        b = np.ascontiguousarray(b, dtype=np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(f"vectors of different widths: {a.shape} vs {b.shape}")
        self.a, self.b, self.scale = a, b, float(scale)
        self.ta, self.tb = torch.from_numpy(a), torch.from_numpy(b)
        self.n, self.m = a.shape[0], b.shape[0]
        self.na, self.nb = norms if norms is not None else (row_sqnorms(a), row_sqnorms(b))
        self.ta_n = torch.from_numpy(self.na.astype(np.float32))
        self.tb_n = torch.from_numpy(self.nb.astype(np.float32))
        g = (a.shape[1] + 4) * U32 * 1.01 * self.scale
        self.row_err = g * self.na + 1e-30
        self.col_err = g * self.nb + 1e-30
        self._bf = None
        self._set_screen_err()

    def _set_screen_err(self) -> None:
        """bfloat16 screening: one bf16 GEMM of [a, 1] by [-2b, |b|^2] gives |b|^2 - 2 a.b,
        then |a|^2 is added in float64.  Inputs rounded to bf16 (|a'_q - a_q| <= u|a_q|,
        u = 2^-8; times -2 is exact), products exact in float32, float32 accumulation
        (gamma = gamma_{d+1}), the output rounded to bf16; with 2|a||b| <= |a|^2 + |b|^2:
        |c_bf - c| <= (3u + 4u^2 + 2 gamma)(|a|^2 + |b|^2) + (2u + 2u^2 + 2 gamma)|b|^2,
        times 1.02 for margin."""
        if self.screen != "bfloat16":
            return
        ub, gam = 2.0 ** -8, _gamma(self.a.shape[1] + 1)
        ga = (3 * ub + 4 * ub * ub + 2 * gam) * 1.02
        gb = (2 * ub + 2 * ub * ub + 2 * gam) * 1.02
        self._screen_row_err = ga * self.na + 1e-30
        self._screen_col_err = (ga + gb) * self.nb + 1e-30

    @property
    def screen_row_err(self):
        return self._screen_row_err if self.screen == "bfloat16" else self.row_err

    @property
    def screen_col_err(self):
        return self._screen_col_err if self.screen == "bfloat16" else self.col_err

    def _bf16_operands(self):
        """[a, 1] and [-2b, |b|^2] in bfloat16 (made once)."""
        import torch

        if self._bf is None:
            one = torch.ones(self.n, 1)
            self._bf = (torch.cat([self.ta, one], 1).to(torch.bfloat16),
                        torch.cat([-2.0 * self.tb, self.tb_n[:, None]], 1).to(torch.bfloat16))
        return self._bf

    def screen_block(self, r0, r1):
        if self.screen != "bfloat16":
            return self.block(r0, r1), None
        import torch

        a, b = self._bf16_operands()
        return torch.mm(a[r0:r1], b.T), self._screen_offset(r0, r1)

    def _screen_offset(self, r0, r1):
        return self.na[r0:r1]  # |a|^2, left out of the bf16 GEMM

    def _costs(self, ta, na, tb=None, nb=None):
        import torch

        tb, nb = (self.tb, self.tb_n) if tb is None else (tb, nb)
        out = torch.addmm(nb[None, :], ta, tb.T, alpha=-2.0)
        out += na[:, None]
        if self.scale != 1.0:
            out *= self.scale
        return out

    def block(self, r0, r1):
        return self._costs(self.ta[r0:r1], self.ta_n[r0:r1])

    def rows(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        return self._costs(self.ta[idx], self.ta_n[idx])

    def sub(self, idx, cols):
        idx, cols = np.asarray(idx, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        return self._costs(self.ta[idx], self.ta_n[idx], self.tb[cols], self.tb_n[cols])

    def exact(self, i, j):
        """Float64 sum of squared differences (products of float32 inputs are exact)."""
        from saew.compute.matching.lap_sparse import pair_sqdist

        return pair_sqdist(self.a, self.b, i, j) * self.scale

    def dense(self):
        a64, b64 = self.a.astype(np.float64), self.b.astype(np.float64)
        c = self.na[:, None] + self.nb[None, :] - 2.0 * (a64 @ b64.T)
        np.maximum(c, 0.0, out=c)
        return c * self.scale

    @property
    def T(self):
        return SqEuclidCosts(self.b, self.a, self.scale, (self.nb, self.na), self.screen)


class CosineCosts(SqEuclidCosts):
    """c_ij = 1 - cos(a_i, b_j) = 1 - a_i . b_j / (||a_i|| ||b_j||), with cos = 0 for a zero
    vector (any row vectors; they need not be unit).

    Blocks: one float32 GEMM of the unit vectors a^ = fl32(a / ||a||) (norms in float64), so
    a^_q = (a_q / ||a||)(1 + e_q) with |e_q| <= u and |a^ . b^ - cos| <= 2u + u^2; with the
    GEMM's gamma_d (|a^_i|^2 + |b^_j|^2) / 2 the bound is (d + 8) u' (|a^_i|^2 + |b^_j|^2) / 2.
    ``exact``: float64 dot products of the given vectors over their float64 norms.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, _parts: tuple | None = None,
                 screen: str = "float32"):
        from saew.compute.matching.lap_sparse import row_sqnorms

        if _parts is None:
            a = np.ascontiguousarray(a, dtype=np.float32)
            b = np.ascontiguousarray(b, dtype=np.float32)
            if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
                raise ValueError(f"vectors of different widths: {a.shape} vs {b.shape}")
            ra, rb = np.sqrt(row_sqnorms(a)), np.sqrt(row_sqnorms(b))
            ua = (a / np.where(ra > 0, ra, 1.0)[:, None]).astype(np.float32)
            ub = (b / np.where(rb > 0, rb, 1.0)[:, None]).astype(np.float32)
            _parts = (a, b, ra, rb, ua, ub, row_sqnorms(ua), row_sqnorms(ub))
        self._parts = _parts
        self.raw_a, self.raw_b, self.ra, self.rb, ua, ub, nua, nub = _parts
        super().__init__(ua, ub, 1.0, (nua, nub), screen)
        g = (ua.shape[1] + 8) * U32 * 1.01 * 0.5
        self.row_err = g * self.na + 1e-30
        self.col_err = g * self.nb + 1e-30

    def _set_screen_err(self) -> None:
        """bfloat16 screening: one bf16 GEMM of [a^, 1] by [-b^, 1] gives 1 - a^.b^ directly
        (exactly 1 if a vector is zero).  Inputs rounded to bf16, float32 accumulation over
        d + 1 terms of size <= |a^||b^| and 1, the output (<= 2 + ...) rounded to bf16, and
        the unit vectors' own float32 rounding: for nonzero unit vectors
        |c_bf - c| <= (4u + 2u^2 + 3 gamma + 8 u32) * 1.02 * (|a^|^2 + |b^|^2) / 2."""
        if self.screen != "bfloat16":
            return
        ub, gam = 2.0 ** -8, _gamma(self.a.shape[1] + 1)
        g = 0.5 * (4 * ub + 2 * ub * ub + 3 * gam + 8 * U32) * 1.02
        self._screen_row_err = g * self.na + 1e-30
        self._screen_col_err = g * self.nb + 1e-30

    def _bf16_operands(self):
        import torch

        if self._bf is None:
            self._bf = (torch.cat([self.ta, torch.ones(self.n, 1)], 1).to(torch.bfloat16),
                        torch.cat([-self.tb, torch.ones(self.m, 1)], 1).to(torch.bfloat16))
        return self._bf

    def _screen_offset(self, r0, r1):
        return None

    def _costs(self, ta, na, tb=None, nb=None):
        import torch

        tb = self.tb if tb is None else tb
        return torch.addmm(torch.ones(1, dtype=torch.float32), ta, tb.T, alpha=-1.0)

    def exact(self, i, j):
        from saew.compute.matching.lap_sparse import pair_dot

        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        den = self.ra[i] * self.rb[j]
        dot = pair_dot(self.raw_a, self.raw_b, i, j)
        return 1.0 - np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)

    def dense(self):
        den = np.outer(self.ra, self.rb)
        dot = self.raw_a.astype(np.float64) @ self.raw_b.astype(np.float64).T
        return 1.0 - np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)

    @property
    def T(self):
        a, b, ra, rb, ua, ub, nua, nub = self._parts
        return CosineCosts(b, a, (b, a, rb, ra, ub, ua, nub, nua), self.screen)


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
        cand[r0:r1] = idx.numpy()
        val[r0:r1] = vals.double().numpy()
        cm = blk.amin(dim=0).double()
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
        from saew.compute.matching.lap_sparse import near_edges

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
       error bound, the rest by the row and column bounds t_i, s_j (``_uncertified_rows``).
       A row that fails is checked on the few columns its bound leaves open
       (``_check_prefix``, one small GEMM), or recomputed whole when they are many
       (``_check_rows``, which also widens its candidates).  Pairs that violate, or are near
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
        _, ci, cj, cv, _, _ = _check_rows(costs, grow, u, v, np.inf, kr, t, cfg, cache)
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
        bad, order, width = _uncertified_rows(t, s, u, v, t_err, sre, sce, tol, widths=True)
        nviol = 0
        few = width <= cfg.prefix_max * m  # open columns few enough for a column subset
        if few.any():  # certified once no near pair is left outside E
            stats["prefix_rows"] += int(few.sum())
            added += edges.add(costs, *_check_prefix(costs, bad[few], order, width[few], u, v,
                                                     tol, cfg))
        if (~few).any():
            stats["rescreened_rows"] += int((~few).sum())
            nv, ci, cj, cv, vi, vj = _check_rows(costs, bad[~few], u, v, tol, kr, t, cfg, cache)
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


def _uncertified_rows(t, s, u, v, t_err, row_err, col_err, tol, widths: bool = False):
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


def _cached_rows(costs: CostProvider, rr: np.ndarray, cache: dict, budget: int):
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


def _check_rows(costs: CostProvider, rows_: np.ndarray, u, v, tol, kr, t, cfg: SolverConfig,
                cache: dict):
    """Recompute whole rows: find pairs whose exact reduced cost c_ij - u_i - v_j < -tol, and
    widen each row's candidate set to its ``grow`` x kr_i cheapest columns (raising t_i), plus
    every column tied with the last of them (identical features: without the ties, rows that
    all rank the same tied columns first could not be matched among the candidates).

    Pairs not provably >= -tol from the approximate block (error bounds subtracted) are checked
    in float64 (``_violations``); of the violators, each row keeps its kr_i most negative.
    Returns (number of violations, candidate rows, cols, approximate costs, violator rows,
    cols).  ``kr`` and ``t`` are updated in place.
    """
    import torch

    m = costs.m
    nviol = 0
    out_i, out_j, out_w, bad_i, bad_j = [], [], [], [], []
    step = max(1, min(cfg.chunk_rows, (1 << 25) // max(1, m)))
    for c0 in range(0, len(rows_), step):
        rr = rows_[c0:c0 + step]
        blk = _cached_rows(costs, rr, cache, cfg.cache_bytes)
        newk = np.minimum(kr[rr] * cfg.grow, m)
        kk = int(newk.max())
        vals = blk.topk(kk, dim=1, largest=False, sorted=True)[0]
        last = vals[np.arange(len(rr)), newk - 1]
        fi, fj = torch.nonzero(blk <= last[:, None], as_tuple=True)
        out_i.append(rr[fi.numpy()])
        out_j.append(fj.numpy())
        out_w.append(blk[fi, fj].double().numpy())
        t[rr] = last.double().numpy()
        if np.isfinite(tol):
            bi, bj, rv = _violations(costs, blk, rr, None, u, v, tol)
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


def _violations(costs: CostProvider, blk, rr: np.ndarray, cols: np.ndarray | None, u, v, tol):
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


def _check_prefix(costs: CostProvider, rows_: np.ndarray, order: np.ndarray, width: np.ndarray,
                  u, v, tol, cfg: SolverConfig):
    """Check rows against the only columns their bound leaves open: row i's non-candidate
    pairs are certified for every column outside ``order[:width_i]`` (the columns by
    descending v_j + col_err_j), so one GEMM of the rows by ``order[:max width]`` finds every
    possible violator.  Returns the pairs there whose approximate reduced cost is within
    2 (row_err_i + col_err_j) + tol of 0 (rows, cols), for the exact edges: every violator
    and the pairs too close to tell without float64 costs.  The others are certified."""
    import torch

    out_i, out_j = [], []
    cols = order[: int(width.max())]
    step = max(1, min(cfg.chunk_rows, (1 << 24) // max(1, len(cols))))
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


def _sparse_sap(indptr, indices, cost, m, start="cold", v0=None, col4row0=None):
    from saew.compute.matching.lap_sparse import sparse_sap

    return sparse_sap(indptr, indices, cost, m, start, v0, col4row0)  # casts without copies
