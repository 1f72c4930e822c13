"""Fixtures for SAE Match and reconstruction tests: planted permutations, codes, embeddings."""
from __future__ import annotations

import numpy as np

from saew.sae.params import SAEParams


def twin_jumprelu(d_in: int = 16, n_twins: int = 16, seed: int = 0) -> SAEParams:
    """A JumpReLU SAE whose features come in twins: nearly the same decoder direction (so the
    decoder cosine cannot tell them apart) but thresholds 3x apart and their own encoders."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n_twins, d_in))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    w_dec = np.repeat(g, 2, axis=0) + 0.003 * rng.standard_normal((2 * n_twins, d_in))
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    theta = np.tile([0.2, 0.6], n_twins) * rng.uniform(0.9, 1.1, 2 * n_twins)
    w_enc = (w_dec + 0.01 * rng.standard_normal(w_dec.shape)).T
    return SAEParams(w_enc=np.ascontiguousarray(w_enc, np.float32),
                     b_enc=(0.05 * rng.standard_normal(2 * n_twins)).astype(np.float32),
                     w_dec=w_dec.astype(np.float32), b_dec=(0.01 * rng.standard_normal(d_in)).astype(np.float32),
                     architecture="jumprelu", threshold=theta.astype(np.float32))


def planted_next_layer(p: SAEParams, perm: np.ndarray, seed: int = 1,
                       scale: tuple[float, float] = (0.25, 4.0), noise: float = 0.0) -> SAEParams:
    """Layer l+1 as feature i of ``p`` moved to ``perm[i]``, with the same FOLDED parameters but
    thresholds rescaled per feature by a factor in ``scale`` (the norm growth between layers):
    theta' = c theta, w_dec' = w_dec / c, w_enc' = c w_enc, b_enc' = c b_enc; ``noise`` (relative)
    perturbs the decoder rows and encoder columns."""
    rng = np.random.default_rng(seed)
    c = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), p.d_sae)).astype(np.float32)
    if noise:
        jit = lambda a: (a + noise * np.linalg.norm(a, axis=1, keepdims=True) / np.sqrt(a.shape[1])  # noqa: E731
                         * rng.standard_normal(a.shape)).astype(np.float32)
        p = SAEParams(w_enc=np.ascontiguousarray(jit(p.w_enc.T).T), b_enc=p.b_enc, w_dec=jit(p.w_dec),
                      b_dec=p.b_dec, architecture=p.architecture, threshold=p.threshold)
    inv = np.argsort(perm)  # inv[perm[i]] = i

    def move(a: np.ndarray) -> np.ndarray:
        return a[inv]

    return SAEParams(w_enc=np.ascontiguousarray(move((p.w_enc * c[None, :]).T).T),
                     b_enc=move(p.b_enc * c), w_dec=move(p.w_dec / c[:, None]), b_dec=p.b_dec.copy(),
                     architecture=p.architecture, threshold=move(p.threshold * c))


def put_codes(lake, release: str, layer: int, codes, n_tokens: int | None = None) -> None:
    """Write a [tokens x features] code matrix (dense or scipy sparse) as ``activations``
    (non-zero entries) plus its ``activation_sets`` row."""
    import scipy.sparse as sp

    from saew.storage import catalog

    m = sp.coo_matrix(codes)
    with lake.transaction():
        lake.write("activations", {"token_id": m.row.astype(np.int64), "feature": m.col.astype(np.int32),
                                   "value": m.data.astype(np.float32)}, release=release, layer=int(layer))
        lake.write("activation_sets", {"n_tokens": [int(n_tokens or m.shape[0])], "source": ["test"],
                                       "run_id": ["test"]}, release=release, layer=int(layer))
    catalog.refresh(lake)


def put_embeddings(lake, release: str, layer: int, features: np.ndarray, vectors: np.ndarray,
                   embedder: str = "test-embedder") -> None:
    from saew.storage import catalog

    with lake.transaction():
        lake.write("embeddings", {"feature": np.asarray(features, np.int32),
                                  "embedding": np.asarray(vectors, np.float32)},
                   release=release, layer=int(layer), embedder=embedder)
    catalog.refresh(lake)
