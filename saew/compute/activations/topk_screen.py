"""Exact TopK SAE codes at the price of a bfloat16 GEMM: screen, bound, then compute only the k.

A TopK SAE keeps, per token, the k largest pre-activations p_j = x . w_j + b_j (x already
normalised and centred, ``TorchSAE.pre_activations``) of d_sae. The float32 GEMM that computes
all of them is most of an encode's cost; on a CPU with native bfloat16 a bf16 GEMM of the same
shape runs faster (measured at 384 x 4,096: about 7x with AMX, 2.3x with AVX512-BF16 alone).
This module gets the same codes from one bf16 GEMM of depth D d_in (``screen_depth``: D = 3
where the CPU has AMX, whose GEMM is cheap enough to buy a tight bound, or the SAE is narrow;
D = 1 for wide SAEs elsewhere):

1. D = 3: split x = x_h + x_l and W = W_h + W_l (bf16 high parts, bf16-rounded low parts) and
   compute G = [x_h | x_h | x_l] @ [W_h ; W_l ; W_h]; D = 1: G = x_h @ W_h. Either is ONE bf16
   GEMM (float32 accumulation, checked by ``compute.cpu.bf16_gemm_accumulates_in_float32``; one
   rounding of the result to bf16);
2. bound its error rigorously (u = 2^-8, the bf16 unit roundoff;
   S_ij = ||x_i|| ||w_j|| >= sum_k |x_ik w_kj|, Cauchy-Schwarz):

       |x.w_j - G_ij| <= 2u/(1-2u) |G_ij|                     (rounding of the result, even
                                                                if truncated rather than rounded)
                       + gamma_{Dd} (1+u)^2 (1+2u)^[D=3] S_ij  (float32 accumulation of D d exact
                                                                bf16 x bf16 products)
                       + u^2 (3 + 2u) S_ij       (D = 3)       (the dropped x_l W_l term and the
                                                                rounding of the low parts)
                       + (2u + u^2) S_ij         (D = 1)       (the rounding of x and W to bf16:
                                                                x_h w_h = x w (1+d1)(1+d2))

   taken over the row as E_i = a max_j |G_ij| + c ||x_i|| max_j ||w_j|| (+ the float32
   rounding of G + b) >= e_ij, so p_j lies in [q_j - E_i, q_j + E_i], q_j = G_ij + b_j;
3. with q_(k) the k-th largest q_j, at least k features are >= q_(k) - E_i, so a feature with
   q_j < q_(k) - 2 E_i cannot be in the top k. The candidates (q_j >= q_(k) - 2 E_i: k plus the
   few within the band) get their exact pre-activation, a float64 dot product of the float32
   inputs (exact products, float64 sums) rounded once to float32;
4. the k largest exact values win (ties: the lower feature index), clamped at 0 as TopK does.

The result is the TopK of the exactly computed pre-activations: the same features as a float32
GEMM's TopK except where two pre-activations tie within float32 rounding, and each value the
correctly rounded float32 of x . w_j + b_j (a float32 GEMM's is within a few ulps of it). One
numba pass per token (parallel over chunks of tokens) does steps 2-4 without any [n, d_sae] float32
matrix and no sort of d_sae values (``_screened_topk``); reference: the screened exact assignment of ``compute.matching`` uses the same
screen-and-certify scheme.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from saew.compute.cpu import SELECT_DTYPES, U32, bf16_gemm_accumulates_in_float32, native_amx, native_bf16

U16 = 2.0 ** -8   # unit roundoff of bfloat16
SCREENS = SELECT_DTYPES


def screen_available() -> bool:
    """Whether this CPU runs the bf16 screen natively, with float32 accumulation."""
    return native_bf16() and bf16_gemm_accumulates_in_float32()


def use_screen(screen: str, device: str, architecture: str) -> bool:
    """``--screen``: auto (the bf16 screen for TopK SAEs on a CPU with native bf16), bfloat16
    (always, for TopK on the CPU), float32 (never: the plain float32 GEMM and torch.topk)."""
    if architecture != "topk" or str(device) != "cpu" or screen == "float32":
        return False
    return screen == "bfloat16" or screen_available()


def screen_depth(d_in: int, d_sae: int) -> int:
    """D of the screening GEMM (module docstring): 3 where the CPU has AMX or the SAE is narrow
    (d_sae < 6 d_in), else 1. Measured on AVX512-BF16 without AMX, 2 threads, trained minilm
    TopK SAEs (k 32) on real residuals: at 384 x 1,536 the 3-deep screen takes 16.8 us per token
    (38 exact dot products) and the 1-deep 22.2 (95), float32 19.9; at 384 x 4,096 the 3-deep
    34.2 (41), the 1-deep 24.1 (140), float32 43.2. The 1-deep GEMM saves 2 d_in d_sae per
    token and its ~2.3x wider bound costs more candidates, so it wins on wide SAEs only; with
    AMX the 3-deep GEMM is cheap enough (8.6 us at 384 x 4,096) to keep the tight bound. The
    codes are the same either way."""
    return 3 if native_amx() or d_sae < 6 * d_in else 1


DEPTHS = (1, 3)   # the screening GEMM's depths, in units of d_in
# The screening GEMM's rows are padded (zeros) to a multiple of this: torch's bf16 CPU GEMM
# (oneDNN) keeps memory for every distinct row count it sees, and harvest's batches have as
# many row counts as padded sequence lengths (measured: 255 -> 637 MB of resident memory over
# 1,200 GEMMs of 600-1,024 random rows x 384 x 4,096, flat at 272 MB with rows rounded up to
# 128; float32 GEMMs stay flat either way). The padded rows' results are dropped; the codes do
# not depend on G's bits (the bound holds for any summation order).
SCREEN_ROW_BLOCK = 64


def _check_depth(depth: int) -> None:
    if depth not in DEPTHS:
        raise ValueError(f"screen depth {depth}: one of {DEPTHS}")


def _bf16_stack(t, order: tuple[int, int, int], dim: int, depth: int):
    """t in bf16 (depth 1), or its bf16 high part h and the bf16 rounding of its low part l
    stacked along ``dim`` in ``order`` (0 = h, 1 = l; depth 3)."""
    import torch

    hi = t.to(torch.bfloat16)
    if depth == 1:
        return hi
    parts = (hi, (t - hi.to(torch.float32)).to(torch.bfloat16))
    return torch.cat([parts[o] for o in order], dim)


def screen_lhs(x, depth: int):
    """L of the screening GEMM G = L @ R (module docstring, step 1): [x_h | x_h | x_l] for
    depth 3, x_h for depth 1."""
    _check_depth(depth)
    return _bf16_stack(x, (0, 0, 1), 1, depth)


def screen_rhs(w, depth: int):
    """R of G = L @ R: [W_h ; W_l ; W_h] for depth 3 (with L: x_h W_h + x_h W_l + x_l W_h), W_h
    for depth 1."""
    _check_depth(depth)
    return _bf16_stack(w, (0, 1, 0), 0, depth)


def error_coefficients(d_in: int, depth: int = 3) -> tuple[float, float]:
    """(a, c) of the bound e_ij = a |G_ij| + c ||x_i|| ||w_j|| for the GEMM of depth ``depth``
    x d_in (module docstring, step 2; the kernel applies it with the row's maxima of |G_ij| and
    ||w_j||)."""
    _check_depth(depth)
    u = U16
    n = depth * d_in
    gamma = n * U32 / (1 - n * U32)
    a = 2 * u / (1 - 2 * u)
    if depth == 3:
        c = gamma * (1 + u) ** 2 * (1 + 2 * u) + u * u * (3 + 2 * u)
    else:
        c = gamma * (1 + u) ** 2 + (2 * u + u * u)
    return a, c


@numba.njit(cache=True, nogil=True, fastmath=True)
def _dot64(x, w):
    """sum_q x_q w_q of a float64 row (the float32 input, widened) and a float32 vector: every
    product exact, the float64 sum (any order: fastmath lets it vectorise) within
    d 2^-53 sum |x_q w_q|."""
    s = 0.0
    for q in range(x.shape[0]):
        s += x[q] * np.float64(w[q])
    return s


@numba.njit(cache=True, nogil=True)
def _kth_largest(src, n, k, buf):
    """The k-th largest of src[:n] (1 <= k <= n): Hoare quickselect on a copy in buf, median of
    three pivots, O(n) expected; equal values are split between both sides, so runs of ties
    cost no more than distinct values."""
    for t in range(n):
        buf[t] = src[t]
    target = n - k
    lo = 0
    hi = n - 1
    while lo < hi:
        x0 = buf[lo]
        x1 = buf[(lo + hi) >> 1]
        x2 = buf[hi]
        pivot = max(min(x0, x1), min(max(x0, x1), x2))    # median of three
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                tmp = buf[i]
                buf[i] = buf[j]
                buf[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return pivot                                   # buf[j+1 .. i-1] == pivot
    return buf[target]


@numba.njit(cache=True, nogil=True, inline="always")
def _group(grp, g, gs, m):
    """[lo, hi) of feature group grp of g contiguous groups of gs (the last takes the rest)."""
    lo = grp * gs
    return lo, (m if grp == g - 1 else lo + gs)


@numba.njit(cache=True, parallel=True, nogil=True, fastmath=True)
def _screened_topk(g16, b, x, wt, xnorm, wmax, bmax, k, a, c):
    """Per row i: the k features of largest exact pre-activation x_i . wt_j + b_j, screened
    by g16 (the bf16 GEMM's result as uint16 bits, see module docstring) with the row's
    bound E_i = a max_j |G_ij| + c ||x_i|| max_j ||w_j|| (+ the float32 rounding of G + b);
    (features sorted ascending, their float32 values, the number of exact dot products
    computed; -1 where the bf16 result overflowed).

    Per row, in O(d_sae) with no sort of d_sae values:

    * one pass widens the bf16 bits to float32 and takes max_j |G_ij| as an integer maximum of
      the bits without the sign (bf16 orders like its bit patterns; >= 0x7F80 is inf or nan);
    * the features split into g = min(d_sae, 4k) contiguous groups; q = G + b and each group's
      maximum in one pass. The k-th largest group maximum tau0 is reached by k distinct
      features, so tau0 <= q_(k), the k-th largest q (found by quickselect over g values);
    * only groups whose maximum is >= tau0 - 2 E_i can hold a candidate; their features with
      q_j >= tau0 - 2 E_i include every feature >= q_(k). Quickselect gives q_(k) among them,
      and the candidates are those with q_j >= q_(k) - 2 E_i (module docstring, step 3);
    * the candidates' exact float64 dot products; the k largest by a rank count (ties: the
      lower feature), written in feature order.

    Rows are split into at most 64 chunks, one per parallel task, each with its own buffers."""
    n, m = g16.shape
    g = min(m, 4 * k)
    gs = m // g
    out_f = np.zeros((n, k), np.int32)
    out_v = np.zeros((n, k), np.float32)
    n_exact = np.zeros(n, np.int64)
    n_chunks = min(n, 64)
    per = (n + n_chunks - 1) // max(n_chunks, 1)
    for ch in numba.prange(n_chunks):
        bits = np.empty(m, np.uint32)
        p = np.empty(m, np.float32)
        gmx = np.empty(g, np.float32)
        cand = np.empty(m, np.int64)
        vals = np.empty(m, np.float32)
        buf = np.empty(m, np.float32)
        exact = np.empty(m, np.float64)
        xr = np.empty(x.shape[1], np.float64)
        one = np.empty(1, np.uint32)
        one_f = one.view(np.float32)
        for i in range(ch * per, min(n, (ch + 1) * per)):
            hmax = np.uint32(0)
            for j in range(m):
                h = np.uint32(g16[i, j])
                hmax = max(hmax, h & np.uint32(0x7FFF))
                bits[j] = h << np.uint32(16)
            if hmax >= np.uint32(0x7F80):                  # inf or nan in the bf16 result
                n_exact[i] = -1
                continue
            one[0] = hmax << np.uint32(16)
            gmax = np.float64(one_f[0])                      # max_j |G_ij|
            gv = bits.view(np.float32)
            for grp in range(g):
                lo, hi = _group(grp, g, gs, m)
                mx = gv[lo] + b[lo]
                p[lo] = mx
                for j in range(lo + 1, hi):
                    v = gv[j] + b[j]
                    p[j] = v
                    mx = v if v > mx else mx
                gmx[grp] = mx
            tau0 = _kth_largest(gmx, g, k, buf)
            e = ((a * gmax + c * xnorm[i] * wmax + 2.0 ** -23 * (gmax + bmax))
                 * (1.0 + 1e-5) + 1e-30)
            cut0 = np.float64(tau0) - 2.0 * e
            nc = 0
            for grp in range(g):
                if gmx[grp] >= cut0:
                    lo, hi = _group(grp, g, gs, m)
                    for j in range(lo, hi):
                        if p[j] >= cut0:
                            cand[nc] = j
                            vals[nc] = p[j]
                            nc += 1
            kth = _kth_largest(vals, nc, k, buf)            # q_(k): nc >= k by construction
            cut = np.float64(kth) - 2.0 * e
            nf = 0
            for t in range(nc):
                if vals[t] >= cut:
                    cand[nf] = cand[t]
                    nf += 1
            for q in range(x.shape[1]):
                xr[q] = np.float64(x[i, q])
            for t in range(nf):
                j = cand[t]
                exact[t] = np.float64(np.float32(_dot64(xr, wt[j]) + np.float64(b[j])))
            n_exact[i] = nf
            o = 0
            for t in range(nf):                            # rank: larger, or equal and lower
                r = 0
                et = exact[t]
                for s2 in range(nf):
                    es = exact[s2]
                    r += (es > et) | ((es == et) & (s2 < t))
                if r < k:
                    v = exact[t]
                    out_f[i, o] = cand[t]
                    out_v[i, o] = np.float32(v if v > 0.0 else 0.0)
                    o += 1
    return out_f, out_v, n_exact


@dataclass
class ScreenedTopK:
    """A TopK ``TorchSAE`` prepared for the bf16 screen: the screening GEMM's bf16 weights
    ([W_h; W_l; W_h] for depth 3, W_h for depth 1), W^T in float32 for the exact dot products,
    and the column norms."""
    sae: object
    w_cat: object          # torch bf16 [D d_in, d_sae]
    wt: np.ndarray         # float32 [d_sae, d_in]
    b: np.ndarray          # float32 [d_sae]
    wmax: float            # max_j ||w_j||, rounded up
    bmax: float            # max_j |b_j|
    a: float
    c: float
    depth: int = 3               # D: w_cat is [W_h; W_l; W_h] (3) or W_h (1)
    exact_per_row: float = 0.0   # mean exact dot products per token of the last call

    @classmethod
    def prepare(cls, sae, depth: int | None = None) -> "ScreenedTopK":
        """``depth``: D of the screening GEMM, 1 or 3 (default ``screen_depth(d_in, d_sae)``)."""
        import torch

        depth = screen_depth(*sae.w_enc.shape) if depth is None else depth
        a, c = error_coefficients(sae.w_enc.shape[0], depth)
        w = sae.w_enc.detach().to("cpu", torch.float32).contiguous()
        w_cat = screen_rhs(w, depth)
        wt = np.ascontiguousarray(w.numpy().T)
        wnorm = np.sqrt(np.einsum("jd,jd->j", wt.astype(np.float64), wt.astype(np.float64)))
        b = np.ascontiguousarray(sae.b_enc.detach().cpu().numpy(), np.float32)
        return cls(sae, w_cat.contiguous(), wt, b, float(wnorm.max(initial=0.0)) * (1 + 1e-12),
                   float(np.abs(b).max(initial=0.0)), a, c, depth)

    def encode_sparse(self, x):
        """``TorchSAE.encode_sparse(x)``'s (row, feature, value) tensors, row-major."""
        import torch

        s = self.sae
        xc = s.centre(s.normalise(x)[0]).to(torch.float32).contiguous()
        xn = xc.numpy()
        if not np.isfinite(xn).all():
            return s.encode_sparse(x)
        lhs = screen_lhs(xc, self.depth)
        n, pad = lhs.shape[0], -lhs.shape[0] % SCREEN_ROW_BLOCK
        if pad:
            lhs = torch.cat([lhs, lhs.new_zeros(pad, lhs.shape[1])])
        g = (lhs @ self.w_cat)[:n]
        g16 = g.view(torch.int16).numpy().view(np.uint16)
        xnorm = np.sqrt(np.einsum("id,id->i", xn.astype(np.float64), xn.astype(np.float64))) * (1 + 1e-12)
        k = min(int(s.k), g16.shape[1])
        feat, val, n_exact = _screened_topk(g16, self.b, xn, self.wt, xnorm, self.wmax, self.bmax, k, self.a, self.c)
        if (n_exact < 0).any():
            return s.encode_sparse(x)
        self.exact_per_row = float(n_exact.mean()) if len(n_exact) else 0.0
        keep = val > 0
        rows = np.broadcast_to(np.arange(feat.shape[0], dtype=np.int64)[:, None], feat.shape)
        return torch.from_numpy(rows[keep]), torch.from_numpy(feat[keep]), torch.from_numpy(val[keep])
