"""Formulas on SAE parameters shared by ingest and compute (one function per formula).

Reference: N. Balagansky, I. Maksimov, D. Gavrilov, "Mechanistic Permutability: Match
Features Across Layers", ICLR 2025 (SAE Match); ../shared/CONTRACT.md section 5.
The names of the methods are listed once, in ``storage.names.DECODER_METHODS``.
"""
from __future__ import annotations

import numpy as np

from saew.sae.params import SAEParams

def fold(p: SAEParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold the JumpReLU threshold theta (1 where the SAE has none, or where theta <= 0).

    w_dec'_i = theta_i * w_dec_i,  w_enc'_i = w_enc_i / theta_i,  b_enc'_i = b_enc_i / theta_i.
    Returns (w_dec' [d_sae, d_in], w_enc' [d_sae, d_in] (encoder columns as rows), b_enc' [d_sae]).
    """
    w_dec = p.w_dec.astype(np.float32, copy=False)
    w_enc = p.w_enc.T.astype(np.float32, copy=False)
    b_enc = p.b_enc.astype(np.float32, copy=False)
    if p.threshold is None:
        return w_dec, w_enc, b_enc
    theta = p.threshold.astype(np.float32)
    # A non-positive threshold (sae-lens initialises JumpReLU thresholds at 0) makes the
    # feature a plain ReLU unit: nothing to fold, so it counts as 1 rather than dividing by 0.
    theta = np.where(theta > 0, theta, np.float32(1.0))
    return w_dec * theta[:, None], w_enc / theta[:, None], b_enc / theta


def match_vectors(p: SAEParams, method: str) -> np.ndarray:
    """Per-feature vectors whose squared Euclidean distance is the method's cost.

    folded:          [w_dec', w_enc', b_enc']   (||.||^2 of the difference = folded cost)
    folded-decoder:  w_dec'
    unfolded:        [w_dec, w_enc, b_enc]
    cosine:          w_dec / ||w_dec||          (||u - v||^2 = 2 (1 - cos), i.e. 2 x the cost)
    random:          as folded (its cost column uses the folded cost)
    """
    if method in ("folded", "random"):
        wd, we, be = fold(p)
        return np.concatenate([wd, we, be[:, None]], axis=1)
    if method == "folded-decoder":
        return fold(p)[0]
    if method == "unfolded":
        return np.concatenate([p.w_dec, p.w_enc.T, p.b_enc[:, None]], axis=1).astype(np.float32)
    if method == "cosine":
        return unit_rows(p.w_dec)
    raise ValueError(f"unknown method {method!r}")


def unit_rows(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (zero rows stay zero)."""
    m = np.asarray(m, dtype=np.float32)
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(n > 0, n, 1)


def pair_costs(src: SAEParams, dst: SAEParams, i: np.ndarray, j: np.ndarray,
               method: str = "folded") -> np.ndarray:
    """The method's cost of matched pairs (i at layer l, j at layer l+1), float64.

    folded:   ||w_dec'_i - w_dec'_j||^2 + ||w_enc'_i - w_enc'_j||^2 + (b_enc'_i - b_enc'_j)^2
    cosine:   1 - cos(w_dec_i, w_dec_j)
    """
    if method == "cosine":
        return 1.0 - pair_cosines(src.w_dec, dst.w_dec, i, j)
    a = match_vectors(src, method)[i].astype(np.float64)
    b = match_vectors(dst, method)[j].astype(np.float64)
    return ((a - b) ** 2).sum(axis=1)


def pair_cosines(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """cos(a_i, b_j) = a_i . b_j / (||a_i|| ||b_j||) for paired rows, in float64 (0 where a
    vector is zero); by chunks of pairs, so no float64 copy of a or b is made."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    out = np.zeros(len(i), dtype=np.float64)
    for c0 in range(0, len(i), 4096):
        x = a[i[c0:c0 + 4096]].astype(np.float64)
        y = b[j[c0:c0 + 4096]].astype(np.float64)
        den = np.sqrt(np.einsum("ij,ij->i", x, x) * np.einsum("ij,ij->i", y, y))
        np.divide(np.einsum("ij,ij->i", x, y), den, out=out[c0:c0 + 4096], where=den > 0)
    return out
