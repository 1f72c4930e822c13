"""Factories for the embed / cluster / transport tests: planted data and direct lake writes."""
from __future__ import annotations

import numpy as np


def planted(n_clusters: int, per: int, dim: int, seed: int = 0, spread: float = 0.15,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Unit-ish vectors around ``n_clusters`` random directions: (vectors [n, dim], truth [n])."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_clusters), per)
    x = centres[truth] + spread * rng.standard_normal((len(truth), dim)) * np.sqrt(4.0 / dim)
    return x.astype(np.float32), truth


def _commit(lake, fn) -> None:
    from saew.storage import catalog

    with lake.transaction():
        fn()
    catalog.refresh(lake)


def put_descriptions(lake, release: str, layer: int, descriptions: dict[int, str]) -> None:
    feats = sorted(descriptions)
    _commit(lake, lambda: lake.write("descriptions", {
        "feature": np.array(feats, np.int32), "description": [descriptions[f] for f in feats],
        "explainer": ["test"] * len(feats), "source": ["neuronpedia"] * len(feats)},
        release=release, layer=layer))


def put_embeddings(lake, release: str, layer: int, features: np.ndarray, vectors: np.ndarray,
                   embedder: str = "all-MiniLM-L6-v2") -> None:
    _commit(lake, lambda: lake.write("embeddings", {
        "feature": np.asarray(features, np.int32), "embedding": np.asarray(vectors, np.float32)},
        release=release, layer=layer, embedder=embedder))


def put_clusters(lake, release: str, layer: int, space: str, labels: np.ndarray) -> None:
    n = len(labels)
    _commit(lake, lambda: lake.write("clusters", {
        "feature": np.arange(n, dtype=np.int32), "cluster": np.asarray(labels, np.int32),
        "probability": np.ones(n, np.float32), "x": np.zeros(n, np.float32),
        "y": np.zeros(n, np.float32)}, release=release, layer=layer, space=space))
