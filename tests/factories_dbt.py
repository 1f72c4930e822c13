"""A small hand-made warehouse for the dbt tests, written straight into a lake with ``Lake.write``.

Release ``r`` with three layers (widths 8, 8, 12): decoder clusters at every layer, text
clusters at layers 0 and 1, matches (decoder/folded, decoder/random, text/cosine), a transport
plan (decoder/emd), activations at layers 0 and 1 (10 tokens) with their co-activation counts,
correlations 0 -> 1 and a few descriptions. ``SmallWarehouse`` keeps the raw arrays so tests can
compute the contract formulas independently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RELEASE = "r"
WIDTHS = {0: 8, 1: 8, 2: 12}

# cluster labels per (space, layer): -1 noise, -2 no vector
LABELS: dict[tuple[str, int], list[int]] = {
    ("decoder", 0): [0, 0, 0, 0, 1, 1, -1, -2],
    ("decoder", 1): [0, 0, 1, 1, 1, -1, -2, 2],
    ("decoder", 2): [0, 0, 0, 1, 1, 1, 2, 2, -1, -1, -2, 3],
    ("text", 0): [0, 0, 1, 1, 1, 1, -2, -2],
    ("text", 1): [0, 0, 0, 1, 1, 1, -1, -2],
}

# permutations perm[i] = j (-1 unmatched) per (space, method, src_layer); dst_layer = src + 1
PERMS: dict[tuple[str, str, int], list[int]] = {
    ("decoder", "folded", 0): [0, 1, 5, -1, 2, 3, 4, 6],
    ("decoder", "folded", 1): [0, 1, 3, 4, 5, 8, 10, 11],
    ("decoder", "random", 0): [7, 6, 5, 4, 3, 2, 1, 0],
    ("decoder", "random", 1): [11, 10, 9, 8, 7, 6, 5, 4],
    ("text", "cosine", 0): [1, 0, 2, 3, 4, 5, -1, -1],
}

# step cosines of decoder/folded (per src_layer, per src feature); costs are 0.1 * (i + 1) + layer
COSINES: dict[int, list[float]] = {
    0: [0.9, 0.8, 0.6, 0.0, 0.75, 0.7, 0.95, 0.5],
    1: [0.9, 0.5, 0.8, 0.71, 0.69, 0.99, 0.3, 0.8],
}

# transport decoder/emd: (src_layer, src_cluster, dst_cluster, mass)
TRANSPORT: list[tuple[int, int, int, float]] = [
    # 0 -> 1 (widths 8 -> 8): rows sum to the bucket sizes 4, 2, 2; columns to 2, 3, 1, 2
    (0, 0, 0, 2.0), (0, 0, 1, 1.5), (0, 0, -1, 0.5), (0, 1, 1, 1.5), (0, 1, 2, 0.5),
    (0, -1, 2, 0.5), (0, -1, -1, 1.5),
    # 1 -> 2 (widths 8 -> 12): rows sum to 2, 3, 1, 2; columns to (3, 3, 2, 1, 3) * 8 / 12
    (1, 0, 0, 1.4), (1, 0, 3, 0.6), (1, 1, 0, 0.6), (1, 1, 1, 2.0), (1, 1, -1, 0.4), (1, 2, 2, 1.0),
    (1, -1, 2, 1.0 / 3.0), (1, -1, 3, 1.0 / 15.0), (1, -1, -1, 1.6),
]

N_TOKENS = 10

# correlations 0 -> 1: (src_feature, dst_feature, n_src, n_dst, n_both, pearson)
CORRELATIONS: list[tuple[int, int, int, int, int, float]] = [
    (0, 0, 10, 6, 6, 0.97), (0, 1, 10, 5, 5, 0.5), (1, 1, 10, 5, 4, 0.96), (2, 5, 4, 3, 2, 0.3),
    (4, 2, 5, 5, 5, 0.95), (4, 3, 5, 2, 1, 0.1), (5, 3, 3, 2, 2, 0.949),
]

DESCRIPTIONS: dict[int, dict[int, str]] = {
    0: {i: f"layer 0 feature {i}" for i in range(6)},
    1: {0: "l1 f0", 1: "l1 f1", 5: "l1 f5"},
    2: {0: "l2 f0", 8: "l2 f8"},
}


def _activations(layer: int) -> np.ndarray:
    """A dense tokens x features activation matrix (zeros = inactive; one negative entry)."""
    rng = np.random.default_rng(100 + layer)
    x = rng.uniform(0.1, 2.0, (N_TOKENS, WIDTHS[layer])) * (rng.random((N_TOKENS, WIDTHS[layer])) < 0.45)
    if layer == 0:
        x[:, 0] = rng.uniform(0.5, 1.0, N_TOKENS)   # features 0 and 1 active on every token:
        x[:, 1] = rng.uniform(0.5, 1.0, N_TOKENS)   # p_ab = 1, NPMI = 1
        x[:, 7] = 0.0                                # dead
        x[:3, 2:6] = 0.7                            # cluster members all live
        x[5, 3] = -0.4                              # negative: stored, but not active
    else:
        x[:, 6] = 0.0                                # dead
        x[:2, :] = np.where(x[:2, :] == 0, 0.3, x[:2, :])
        x[:2, 6] = 0.0
    return x.astype(np.float32)


@dataclass(frozen=True)
class SmallWarehouse:
    release: str = RELEASE
    widths: dict[int, int] = field(default_factory=lambda: dict(WIDTHS))
    labels: dict[tuple[str, int], list[int]] = field(default_factory=lambda: dict(LABELS))
    perms: dict[tuple[str, str, int], list[int]] = field(default_factory=lambda: dict(PERMS))
    cosines: dict[int, list[float]] = field(default_factory=lambda: dict(COSINES))
    transport: list[tuple[int, int, int, float]] = field(default_factory=lambda: list(TRANSPORT))
    activations: dict[int, np.ndarray] = field(default_factory=dict)
    n_tokens: int = N_TOKENS
    correlations: list[tuple[int, int, int, int, int, float]] = field(default_factory=lambda: list(CORRELATIONS))
    descriptions: dict[int, dict[int, str]] = field(default_factory=lambda: dict(DESCRIPTIONS))

    def cost(self, space: str, method: str, layer: int, i: int) -> float:
        return 0.1 * (i + 1) + layer + (0.5 if method == "random" else 0.0)

    def cosine(self, space: str, method: str, layer: int, i: int) -> float:
        if (space, method) == ("decoder", "folded"):
            return self.cosines[layer][i]
        return 0.1


def write_small_warehouse(lake) -> SmallWarehouse:
    """Write the small warehouse into ``lake`` and refresh its catalog; return its raw arrays."""
    from saew.storage import catalog
    from tests.factories import make_sae, put_sae

    w = SmallWarehouse(activations={layer: _activations(layer) for layer in (0, 1)})
    for layer, d in w.widths.items():
        put_sae(lake, w.release, layer, make_sae(d_in=4, d_sae=d, seed=layer))
    with lake.transaction():
        for (space, layer), labels in w.labels.items():
            n = len(labels)
            lake.write("clusters", {
                "feature": np.arange(n, dtype=np.int32), "cluster": np.array(labels, np.int32),
                "probability": np.ones(n, np.float32), "x": np.zeros(n, np.float32),
                "y": np.zeros(n, np.float32)}, release=w.release, layer=layer, space=space)
        for (space, method, src), perm in w.perms.items():
            p = np.array(perm)
            src_f = np.flatnonzero(p >= 0)
            lake.write("matches", {
                "src_feature": src_f.astype(np.int32), "dst_layer": np.full(len(src_f), src + 1, np.int32),
                "dst_feature": p[src_f].astype(np.int32),
                "cost": np.array([w.cost(space, method, src, i) for i in src_f], np.float64),
                "cosine": np.array([w.cosine(space, method, src, i) for i in src_f], np.float64)},
                release=w.release, space=space, method=method, src_layer=src)
        for src in (0, 1):
            rows = [t for t in w.transport if t[0] == src]
            lake.write("transport", {
                "src_cluster": np.array([r[1] for r in rows], np.int32),
                "dst_layer": np.full(len(rows), src + 1, np.int32),
                "dst_cluster": np.array([r[2] for r in rows], np.int32),
                "mass": np.array([r[3] for r in rows], np.float64),
                "cost": np.full(len(rows), 0.5)}, release=w.release, space="decoder", solver="emd",
                src_layer=src)
        for layer, x in w.activations.items():
            tok, feat = np.nonzero(x)
            lake.write("activations", {"token_id": tok.astype(np.int64), "feature": feat.astype(np.int32),
                                       "value": x[tok, feat]}, release=w.release, layer=layer)
            lake.write("activation_sets", {"n_tokens": [w.n_tokens], "source": ["test"], "run_id": ["test"]},
                       release=w.release, layer=layer)
            active = (x > 0).astype(np.int64)
            co = active.T @ active
            a, b = np.nonzero(np.triu(co, k=1))
            lake.write("coactivations", {"feature_a": a.astype(np.int32), "feature_b": b.astype(np.int32),
                                         "n_ab": co[a, b].astype(np.int64)}, release=w.release, layer=layer)
        c = np.array(w.correlations, dtype=object)
        lake.write("correlations", {
            "src_layer": np.zeros(len(c), np.int32), "src_feature": c[:, 0].astype(np.int32),
            "dst_layer": np.ones(len(c), np.int32), "dst_feature": c[:, 1].astype(np.int32),
            "n_src": c[:, 2].astype(np.int64), "n_dst": c[:, 3].astype(np.int64),
            "n_both": c[:, 4].astype(np.int64), "pearson": c[:, 5].astype(np.float64)},
            release=w.release, src_layer=0)
        # feature flow (saew flow): rank-1 predecessors of two layer-1 features, resid and mlp_out
        lake.write("flow_links", {
            "dst_feature": np.array([0, 0, 1, 1], np.int32),
            "src_release": [w.release, f"{w.release}.mlp_out"] * 2,
            "src_layer": np.array([0, 1, 0, 1], np.int32), "src_feature": np.array([0, 2, 1, 0], np.int32),
            "module": ["resid", "mlp_out"] * 2, "rank": np.ones(4, np.int32),
            "cosine": np.array([0.9, 0.2, 0.1, 0.7])}, release=w.release, dst_layer=1)
        for layer, descs in w.descriptions.items():
            feats = sorted(descs)
            lake.write("descriptions", {
                "feature": np.array(feats, np.int32), "description": [descs[f] for f in feats],
                "explainer": ["test"] * len(feats), "source": ["test"] * len(feats)},
                release=w.release, layer=layer)
    catalog.refresh(lake)
    return w


_BUILT: dict[str, tuple] = {}


def built_small_warehouse() -> tuple:
    """(home, SmallWarehouse) of the small warehouse after one ``saew build``, made once per
    test session and shared by the dbt, query and export tests (which only read it)."""
    import tempfile
    from pathlib import Path

    from tests.factories import run_saew
    from saew.storage.lake import Lake

    if "small" not in _BUILT:
        import atexit
        import shutil

        root = Path(tempfile.mkdtemp(prefix="saew-dbt-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        home = root / "home"
        w = write_small_warehouse(Lake(home))
        code, out, err = run_saew(home, "build", "--quiet")
        assert code == 0, out + err
        _BUILT["small"] = (home, w)
    return _BUILT["small"]


def mart(home, sql: str, params: list | None = None) -> list[dict]:
    """Rows of a query on the built catalog, as dicts."""
    import duckdb

    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    try:
        rel = con.sql(sql, params=params)
        cols = rel.columns
        return [dict(zip(cols, r)) for r in rel.fetchall()]
    finally:
        con.close()
