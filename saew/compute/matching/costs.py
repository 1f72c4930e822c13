"""Costs of an assignment problem, read by blocks of rows, each value with a rigorous error bound.

``CostProvider`` is what the solver (``compute.matching.solver``) and its certificate
(``compute.matching.certificate``) read: ``DenseCosts`` (a matrix in memory, exact),
``SqEuclidCosts`` (c_ij = scale ||a_i - b_j||^2) and ``CosineCosts`` (1 - cos(a_i, b_j)), whose
blocks are one float32 GEMM each, and whose screening blocks may be one bfloat16 GEMM
(``resolve_screen``: on CPUs with native bf16 dot products, about 2.4x faster).  Every value a
block gives, and every float32 recomputation, carries a rigorous error bound (row_err_i +
col_err_j, and the coarser screen_row_err_i + screen_col_err_j), which the certificate
subtracts; ``exact`` gives float64 costs of pairs.
"""
from __future__ import annotations

import numpy as np

from saew.compute.cpu import U32, bf16_gemm_accumulates_in_float32, native_bf16
from saew.errors import BadInput

SCREENS = ("auto", "float32", "bfloat16")


def _gamma(d: int) -> float:
    """gamma_d = d u / (1 - d u) for float32 (Higham, sec. 3.1)."""
    return d * U32 / (1 - d * U32)


def _row_vectors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a and b as C-contiguous float32 matrices of row vectors of one width (else ValueError)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"vectors of different widths: {a.shape} vs {b.shape}")
    return a, b


def resolve_screen(screen: str) -> str:
    """``auto``: bfloat16 where the CPU has native bf16 dot products (AVX512-BF16 or AMX; about
    2.4x a float32 GEMM here) and torch's bf16 GEMM accumulates in float32, else float32.  The
    matching is exact either way; only the screening bound (hence the certificate's work)
    differs."""
    if screen not in SCREENS:
        raise BadInput(f"--screen {screen!r}: expected one of {', '.join(SCREENS)}")
    if screen == "float32":
        return screen
    ok = bf16_gemm_accumulates_in_float32()
    if screen == "bfloat16" and not ok:
        raise BadInput("--screen bfloat16: this torch's bfloat16 GEMM does not accumulate in "
                       "float32, so its error bound does not hold; use --screen float32")
    return "bfloat16" if ok and (screen == "bfloat16" or native_bf16()) else "float32"


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
    ``_set_screen_err``). ``device``: where ``screen_block`` runs its GEMM (``--device``; cpu,
    cuda or mps): off the CPU always in float32 (the bf16 bound is the CPU GEMM's), which
    keeps the float32 bound for any summation order (with TF32 off, torch's default);
    every other block stays on the CPU.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, scale: float = 1.0,
                 norms: tuple[np.ndarray, np.ndarray] | None = None, screen: str = "float32",
                 device: str = "cpu"):
        import torch

        from saew.compute.matching.pair_kernels import row_sqnorms

        # the bf16 bound is stated for unit scale and the CPU's GEMM
        self.device = device
        self.screen = resolve_screen(screen) if scale == 1.0 and device == "cpu" else resolve_screen("float32")
        self._dev = None
        a, b = _row_vectors(a, b)
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

    def _device_operands(self):
        """a, |a|^2, b, |b|^2 on ``device`` (copied once)."""
        if self._dev is None:
            self._dev = tuple(t.to(self.device) for t in (self.ta, self.ta_n, self.tb, self.tb_n))
        return self._dev

    def screen_block(self, r0, r1):
        if self.device != "cpu":   # the block on the device (the caller moves results back)
            ta, na, tb, nb = self._device_operands()
            return self._costs(ta[r0:r1], na[r0:r1], tb, nb), None
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
        from saew.compute.matching.pair_kernels import pair_sqdist

        return pair_sqdist(self.a, self.b, i, j) * self.scale

    def dense(self):
        a64, b64 = self.a.astype(np.float64), self.b.astype(np.float64)
        c = self.na[:, None] + self.nb[None, :] - 2.0 * (a64 @ b64.T)
        np.maximum(c, 0.0, out=c)
        return c * self.scale

    @property
    def T(self):
        return SqEuclidCosts(self.b, self.a, self.scale, (self.nb, self.na), self.screen, self.device)


class CosineCosts(SqEuclidCosts):
    """c_ij = 1 - cos(a_i, b_j) = 1 - a_i . b_j / (||a_i|| ||b_j||), with cos = 0 for a zero
    vector (any row vectors; they need not be unit).

    Blocks: one float32 GEMM of the unit vectors a^ = fl32(a / ||a||) (norms in float64), so
    a^_q = (a_q / ||a||)(1 + e_q) with |e_q| <= u and |a^ . b^ - cos| <= 2u + u^2; with the
    GEMM's gamma_d (|a^_i|^2 + |b^_j|^2) / 2 the bound is (d + 8) u' (|a^_i|^2 + |b^_j|^2) / 2.
    ``exact``: float64 dot products of the given vectors over their float64 norms.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, _parts: tuple | None = None,
                 screen: str = "float32", device: str = "cpu"):
        from saew.compute.matching.pair_kernels import row_sqnorms

        if _parts is None:
            a, b = _row_vectors(a, b)
            ra, rb = np.sqrt(row_sqnorms(a)), np.sqrt(row_sqnorms(b))
            ua = (a / np.where(ra > 0, ra, 1.0)[:, None]).astype(np.float32)
            ub = (b / np.where(rb > 0, rb, 1.0)[:, None]).astype(np.float32)
            _parts = (a, b, ra, rb, ua, ub, row_sqnorms(ua), row_sqnorms(ub))
        self._parts = _parts
        self.raw_a, self.raw_b, self.ra, self.rb, ua, ub, nua, nub = _parts
        super().__init__(ua, ub, 1.0, (nua, nub), screen, device)
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
        return torch.addmm(torch.ones(1, dtype=torch.float32, device=ta.device), ta, tb.T, alpha=-1.0)

    def exact(self, i, j):
        from saew.compute.matching.pair_kernels import pair_dot

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
        return CosineCosts(b, a, (b, a, rb, ra, ub, ua, nub, nua), self.screen, self.device)

