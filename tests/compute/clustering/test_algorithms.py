"""saew cluster --algorithm leiden, --stability, the quality columns, structureless layers and
the root-split collapse, through the CLI where it matters."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from saew.compute.clustering.config import ClusterConfig
from saew.compute.clustering.layer import cluster_layer
from saew.compute.clustering.leiden import knn_edges
from saew.sae.params import SAEParams
from tests.factories import make_sae, put_sae
from tests.factories_cluster import planted
from tests.factories_planted import Regime, planted_release

R = "r1"


def _put_planted(lake, layer: int, seed: int, n_clusters: int = 6, per: int = 40, d_in: int = 32):
    w_dec, truth = planted(n_clusters, per, d_in, seed=seed)
    base = make_sae(d_in, len(truth), seed=seed)
    put_sae(lake, R, layer, SAEParams(w_enc=base.w_enc, b_enc=base.b_enc, w_dec=w_dec, b_dec=base.b_dec))
    return truth


def _quality(lake, space="decoder"):
    return lake.query("SELECT * FROM cluster_quality WHERE release = ? AND space = ? ORDER BY layer",
                      [R, space]).to_pylist()


def test_knn_edges():
    idx = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    dist = np.array([[0.0, 0.2, 1.5], [0.0, 0.2, 0.6], [0.0, 1.5, 0.6]], np.float32)
    src, dst, w = knn_edges((idx, dist))
    # self loops dropped, each pair once (src < dst), weight = cosine clipped at 0 (1.5 -> dropped)
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 2)]
    assert w == pytest.approx([0.8, 0.4])


def test_cli_leiden(saew, lake):
    truth = _put_planted(lake, 0, seed=1)
    code, out, err = saew("cluster", "--release", R, "--space", "decoder", "--algorithm", "leiden",
                          "--resolution", "1.0")
    assert code == 0, err
    assert "with leiden" in out
    t = lake.query("SELECT cluster, probability, x FROM clusters WHERE release = ? ORDER BY feature", [R])
    lab = t.column("cluster").to_numpy()
    assert adjusted_rand_score(truth, lab) > 0.95
    p = t.column("probability").to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and (p[lab >= 0] > 0.5).mean() > 0.9
    assert t.column("x").null_count == 0
    (q,) = _quality(lake)
    assert json.loads(q["params"])["algorithm"] == "leiden" and q["has_structure"]
    assert q["n_clusters"] == 6 and q["stability_ari"] is None


def test_cli_stability_and_quality_columns(saew, lake):
    truth = _put_planted(lake, 0, seed=2)
    code, out, err = saew("cluster", "--release", R, "--space", "decoder", "--stability", "2")
    assert code == 0, err
    (q,) = _quality(lake)
    lab = lake.query("SELECT cluster FROM clusters ORDER BY feature").column(0).to_numpy()
    # the same runs in-process (results do not depend on the process): the mean ARI to the reruns
    res = cluster_layer(*_vectors(lake), ClusterConfig(stability=2))
    assert np.array_equal(res.labels, lab) and len(res.reruns) == 2
    want = np.mean([adjusted_rand_score(lab, r) for r in res.reruns])
    assert q["stability_ari"] == pytest.approx(want) and q["stability_ari"] > 0.9
    assert q["largest_share"] == pytest.approx(np.bincount(lab[lab >= 0]).max() / 240)
    assert q["has_structure"] is True and q["coherence"] > q["coherence_null"] + 0.5
    assert q["silhouette"] > 0.5 > abs(q["silhouette_null"])
    assert adjusted_rand_score(truth, lab) > 0.95


def _vectors(lake):
    from saew.compute.clustering.step import layer_vectors

    return layer_vectors(lake, R, 0, "decoder", None)


@pytest.mark.parametrize("algorithm", ["hdbscan", "leiden"])
def test_cli_structureless_layer(saew, lake, algorithm):
    """Isotropic random decoder rows (what the GPT-2-scale benchmark SAEs are): no cluster
    beats its null, the layer says so, and nothing raises (silhouette NULL). (Leiden's chance
    communities, 29-78 members, are what the greedy null's large pool is for: gates.py.)"""
    put_sae(lake, R, 0, make_sae(d_in=512, d_sae=1500, seed=3))
    code, out, err = saew("cluster", "--release", R, "--space", "decoder", "--algorithm", algorithm)
    assert code == 0, err
    (q,) = _quality(lake)
    assert q["has_structure"] is False and q["n_clusters"] == 0
    assert q["largest_share"] == 0.0 and q["silhouette"] is None and q["noise_frac"] == 1.0
    assert "no structure beyond the null" in out


def test_cli_structureless_low_dimensional_layers(saew, lake):
    """Isotropic rows in fewer dimensions, where a search finds far more coherent groups by
    chance (the ``search`` null let 4 and 8 clusters through at these two layers, the default
    ``greedy`` none): no layer reports structure."""
    for release, d_in, d_sae in (("r64", 64, 512), ("r128", 128, 1024)):
        put_sae(lake, release, 0, make_sae(d_in=d_in, d_sae=d_sae, seed=0))
        code, out, err = saew("cluster", "--release", release, "--space", "decoder")
        assert code == 0, err
    q = lake.query("SELECT release, n_clusters, has_structure FROM cluster_quality ORDER BY release")
    assert q.to_pylist() == [{"release": r, "n_clusters": 0, "has_structure": False} for r in ("r128", "r64")]


def test_root_split_collapse_is_capped():
    """Weak separation with a compact outlier group: excess-of-mass without a size cap returns
    {outlier group} and {everything else}; with the default cap no cluster holds half the layer
    and the planted clusters come back far better. (In 96-D, where the collapse shows; in the
    factory's default 384-D the uncapped tree falls apart into many clusters instead.)"""
    r = Regime(shared=0.35, signal=0.15, noise=0.5, outlier=20, zipf=True, background=0.35)
    p = planted_release(r, n_layers=1, d_sae=768, d_in=96, seed=0)
    w, truth = p.w_dec[0], p.labels[0]
    has = np.ones(len(w), bool)
    nocap = cluster_layer(w, has, ClusterConfig(max_cluster_share=0, null_quantile=0,
                                                member_quantile=0)).labels
    assert np.bincount(nocap[nocap >= 0]).max() > 0.5 * len(w)
    lab = cluster_layer(w, has, ClusterConfig()).labels
    assert np.bincount(lab[lab >= 0]).max() <= np.bincount(truth[truth >= 0]).max()
    assert adjusted_rand_score(truth, lab) > adjusted_rand_score(truth, nocap) + 0.4


@pytest.mark.parametrize("args", [
    ["--resolution", "0"], ["--max-cluster-share", "1.5"], ["--null-quantile", "1"],
    ["--member-quantile", "-0.1"], ["--stability", "-1"], ["--null-draws", "5"],
])
def test_bad_new_options(saew, lake, args):
    put_sae(lake, R, 0, make_sae(8, 20, seed=0))
    code, out, err = saew("cluster", "--release", R, "--space", "decoder", *args)
    assert code == 2 and err.startswith("saew: error: ") and err.count("\n") == 1
    assert args[0] in err
    assert not lake.has_data("clusters") and not lake.has_data("cluster_quality")


def test_the_side_process_gives_the_same_layer(lake, monkeypatch):
    """A big layer's null and 2-D layout computed in one more process (layer.side_job, as
    ``saew cluster`` does for the layers it runs in its own process) change nothing."""
    from saew.compute.clustering import layer

    _put_planted(lake, 0, seed=3)
    vec, has = _vectors(lake)
    cfg = ClusterConfig(stability=1)
    inline = cluster_layer(vec, has, cfg)
    monkeypatch.setattr(layer, "SIDE_MIN", 2)      # this small layer counts as big
    side = cluster_layer(vec, has, cfg, side=True)
    assert np.array_equal(inline.labels, side.labels) and (inline.labels >= 0).any()
    assert np.array_equal(inline.reruns[0], side.reruns[0])
    np.testing.assert_array_equal(inline.probability, side.probability)
    np.testing.assert_allclose(inline.xy, side.xy, rtol=1e-6, atol=1e-6)


def test_a_layer_clusters_with_one_thread_wherever_it_runs(monkeypatch):
    """In the driver as in a (single-threaded) worker: UMAP amplifies a two-thread product's
    last-bit differences into other labels, so cluster_layer limits every pool to one thread."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from saew.compute.clustering import layer

    seen = []
    monkeypatch.setattr(layer, "_cluster_layer",
                        lambda *a: seen.append({p["num_threads"] for p in threadpool_info()}))
    with threadpool_limits(2):
        cluster_layer(np.eye(4, dtype=np.float32), np.ones(4, bool), ClusterConfig())
    assert seen == [{1}]
