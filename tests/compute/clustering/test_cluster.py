"""saew cluster: planted clusters recovered, duplicates, -2, quality metrics, determinism."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, silhouette_score

from saew.compute.clustering.config import ClusterConfig
from saew.compute.clustering.knn import unique_rows
from saew.compute.clustering.quality import cluster_coherences, coherence
from saew.compute.clustering.umap_hdbscan import refine_noise
from tests.factories import make_sae, put_sae
from tests.factories_cluster import planted, put_embeddings
from saew.sae.params import SAEParams

R = "r1"


def _planted_sae(seed: int, n_clusters: int = 6, per: int = 40, d_in: int = 32) -> tuple[SAEParams, np.ndarray]:
    w_dec, truth = planted(n_clusters, per, d_in, seed=seed)
    base = make_sae(d_in, len(truth), seed=seed)
    w_dec[5] = w_dec[3]          # an exact duplicate
    w_dec[7] = 0.0               # no direction: -2
    p = SAEParams(w_enc=base.w_enc, b_enc=base.b_enc, w_dec=w_dec, b_dec=base.b_dec)
    return p, truth


def _clusters(lake, layer: int, space: str = "decoder"):
    return lake.query("SELECT feature, cluster, probability, x, y FROM clusters WHERE release = ? "
                      "AND layer = ? AND space = ? ORDER BY feature", [R, layer, space])


def test_coherence_formula_against_pairwise():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((30, 5))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    lab = rng.integers(-1, 3, 30)
    want = []
    for c in range(3):
        m = u[lab == c]
        s = m @ m.T
        want.append(s[~np.eye(len(m), dtype=bool)].mean())
    assert np.allclose(cluster_coherences(u, lab), want)
    assert coherence(u, lab) == pytest.approx(np.mean(want))


def test_unique_rows():
    x = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]], np.float32)
    first, inv = unique_rows(x)
    assert first.tolist() == [0, 1, 3]
    assert inv.tolist() == [0, 1, 0, 2, 1]


def test_cli_planted_decoder(saew, lake):
    truths = {}
    for L in (0, 1):
        p, truths[L] = _planted_sae(seed=L)
        put_sae(lake, R, L, p)
    code, out, err = saew("cluster", "--release", R, "--space", "decoder")
    assert code == 0, err
    for L in (0, 1):
        t = _clusters(lake, L)
        lab = t.column("cluster").to_numpy()
        assert t.num_rows == 240 and t.column("feature").to_pylist() == list(range(240))
        assert lab[7] == -2 and t.column("x")[7].as_py() is None
        ok = lab != -2
        assert adjusted_rand_score(truths[L][ok], lab[ok]) > 0.95
        # the duplicate inherits its representative's cluster and coordinates
        assert lab[5] == lab[3] and t.column("x")[5].as_py() == t.column("x")[3].as_py()
        q = lake.query("SELECT * FROM cluster_quality WHERE release = ? AND layer = ? AND "
                       "space = 'decoder'", [R, L]).to_pylist()
        assert len(q) == 1
        q = q[0]
        assert q["n_clusters"] == len(set(lab[lab >= 0].tolist())) == 6
        assert q["noise_frac"] == pytest.approx(float((lab == -1).sum()) / ok.sum())
        w = lake.query("SELECT w_dec FROM features WHERE release = ? AND layer = ? ORDER BY feature",
                       [R, L]).column("w_dec").to_pylist()
        u = np.array(w, np.float64)
        u[ok] /= np.linalg.norm(u[ok], axis=1, keepdims=True)
        per = []
        for c in sorted(set(lab[lab >= 0].tolist())):
            s = u[lab == c] @ u[lab == c].T
            per.append(s[~np.eye(len(s), dtype=bool)].mean())
        assert q["coherence"] == pytest.approx(np.mean(per), rel=1e-5)
        cl = lab >= 0
        assert q["silhouette"] == pytest.approx(silhouette_score(u[cl], lab[cl], metric="cosine"), rel=1e-4)
        params = json.loads(q["params"])
        assert params["n_components"] == 15 and params["min_cluster_size"] == 8
    # a fixed seed gives identical results, in worker processes (the two layers above, default
    # --workers 2) or in-process (one layer, --workers 1); re-running replaces, never duplicates
    before = _clusters(lake, 0)
    assert saew("cluster", "--release", R, "--space", "decoder", "--layer", "0", "--workers", "1")[0] == 0
    assert _clusters(lake, 0).equals(before)
    assert lake.query("SELECT count(*) AS n FROM clusters").column("n")[0].as_py() == 480
    assert lake.query("SELECT count(*) AS n FROM cluster_quality").column("n")[0].as_py() == 2


def test_cli_text_space_missing_descriptions(saew, lake):
    x, truth = planted(5, 30, 24, seed=7)
    put_sae(lake, R, 0, make_sae(8, 170, seed=0))
    rng = np.random.default_rng(1)
    feats = np.sort(rng.choice(170, 150, replace=False))     # 20 features without an embedding
    put_embeddings(lake, R, 0, feats, x)
    code, out, err = saew("cluster", "--release", R, "--space", "text")
    assert code == 0, err
    lab = _clusters(lake, 0, "text").column("cluster").to_numpy()
    missing = np.setdiff1d(np.arange(170), feats)
    assert (lab[missing] == -2).all() and (lab[feats] != -2).all()
    assert adjusted_rand_score(truth, lab[feats]) > 0.95
    q = lake.query("SELECT params FROM cluster_quality WHERE space = 'text'").column("params")[0]
    assert json.loads(q.as_py())["embedder"] == "all-MiniLM-L6-v2"


def test_refine_pass_recovers_small_clusters():
    x, truth = planted(4, 40, 24, seed=3)
    y, _ = planted(3, 10, 24, seed=4)          # three small groups left as noise by pass one
    z = np.random.default_rng(5).standard_normal((20, 24))   # incoherent noise: stays -1
    u = np.vstack([x, y, z])
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    labels = np.concatenate([truth, np.full(50, -1)]).astype(np.int32)
    prob = np.where(labels >= 0, 1.0, 0.0).astype(np.float32)
    cfg = ClusterConfig(refine_min_cluster_size=4, refine_n_neighbors=8)
    lab, p = refine_noise(u, labels, prob, cfg)
    small, junk = np.arange(160, 190), np.arange(190, 210)
    assert np.array_equal(lab[:160], truth)
    assert (lab[small] >= 4).all()              # new clusters numbered after the first pass's
    assert adjusted_rand_score(np.repeat([0, 1, 2], 10), lab[small]) > 0.9
    assert (p[lab == -1] == 0).all()
    same, _ = refine_noise(u, labels, prob, cfg)
    assert np.array_equal(same, lab)            # seeded: reproducible
    # incoherent noise alone: new clusters fail the coherence threshold and stay noise
    only_junk = np.concatenate([truth, np.full(20, -1)]).astype(np.int32)
    uj = np.vstack([u[:160], u[junk]])
    lab_j, _ = refine_noise(uj, only_junk, np.zeros(180, np.float32), cfg)
    assert (lab_j[160:] == -1).all()


def _nothing_written(lake):
    return not lake.has_data("clusters") and not lake.has_data("cluster_quality")


@pytest.mark.parametrize("args", [
    ["--release", "nope", "--space", "decoder"],
    ["--release", R, "--space", "text"],                       # no embeddings
    ["--release", R, "--space", "decoder", "--layer", "9"],    # no such layer
    ["--release", R, "--space", "decoder", "--min-cluster-size", "1"],
    ["--release", R, "--space", "decoder", "--workers", "0"],
    ["--release", R, "--space", "text", "--embedder", "other"],
])
def test_bad_inputs(saew, lake, args):
    put_sae(lake, R, 0, make_sae(8, 20, seed=0))
    if "--embedder" in args:
        put_embeddings(lake, R, 0, np.arange(20), np.ones((20, 4)))
    code, out, err = saew("cluster", *args)
    assert code == 2
    assert err.startswith("saew: error: ") and err.count("\n") == 1
    assert _nothing_written(lake)
