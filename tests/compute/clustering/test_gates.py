"""The evidence gates and the quality scores, each against an independent hand computation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from saew.compute.clustering.gates import (CoherenceNull, cluster_gate, coherence_null, member_gate,
                                           random_group_quantiles, search_quantiles, size_grid)
from saew.compute.clustering.quality import largest_share, layer_quality, silhouette
from tests.factories_cluster import planted


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pairwise_mean(u):
    g = u @ u.T
    return g[~np.eye(len(u), dtype=bool)].mean()


def _layer(seed=0, n=300, d=8, shared=0.6):
    rng = np.random.default_rng(seed)
    return _unit(shared * np.ones(d) / np.sqrt(d) + rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)


def test_size_grid():
    g = size_grid(1000)
    assert g[0] == 2 and g[-1] == 1000 and (np.diff(g) > 0).all()
    assert (g[1:] / g[:-1]).max() <= 1.5
    assert size_grid(2).tolist() == [2]


def test_random_null_against_brute_force():
    """Windows of random permutations give the same quantiles as groups drawn one by one."""
    u = _layer()
    sizes = np.array([2, 5, 20, 100, 300])
    got = random_group_quantiles(u, sizes, 0.9, 4000, np.random.default_rng(1))
    g2 = u.astype(np.float64) @ u.T
    assert got[0] == pytest.approx(np.quantile(g2[np.triu_indices(len(u), 1)], 0.9), abs=0.015)  # every pair
    rng = np.random.default_rng(2)
    for s, g in zip(sizes[1:-1], got[1:-1]):
        want = np.quantile([_pairwise_mean(u[rng.choice(len(u), s, replace=False)].astype(np.float64))
                            for _ in range(3000)], 0.9)
        assert g == pytest.approx(want, abs=0.015 if s < 20 else 0.008), s
    # all 300 rows: exactly the layer's mean pairwise cosine, whatever the draw
    assert got[-1] == pytest.approx(_pairwise_mean(u.astype(np.float64)), abs=1e-9)


def test_search_null_against_brute_force():
    """Tightest groups of the coordinate-permuted surrogate, by explicit sorting and pairwise means."""
    u = _layer(n=200)
    sizes = np.array([2, 4, 10, 50])
    got = search_quantiles(u, sizes, 0.5, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    x = rng.permuted(u, axis=0).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    seeds = rng.choice(200, 200, replace=False)
    vals = []
    for i in seeds:
        order = np.argsort(-(x @ x[i]))
        order = np.concatenate([[i], order[order != i]])
        vals.append([_pairwise_mean(x[order[:s]]) for s in sizes])
    assert np.allclose(got, np.quantile(np.array(vals), 0.5, axis=0), atol=1e-5)
    # a search null sits above the random one at small sizes
    assert (got[:3] > random_group_quantiles(u, sizes, 0.5, 1000, np.random.default_rng(0))[:3]).all()


def test_member_gate_removes_background_keeps_members():
    x, truth = planted(3, 40, 24, seed=0)
    rng = np.random.default_rng(1)
    bg = rng.standard_normal((60, 24))
    u = _unit(np.vstack([x, bg])).astype(np.float32)
    lab = np.concatenate([truth, rng.integers(0, 3, 60)]).astype(np.int32)   # background thrown in
    out = member_gate(u, lab, 0.99, seed=0)
    assert (out[:120] == truth).mean() > 0.97
    assert (out[120:] == -1).mean() > 0.9
    # hand computation (n <= 1000: the null sample is every feature, order does not matter)
    for c in range(3):
        m = lab == c
        s = u[m].astype(np.float64).sum(0)
        a = (u[m] @ s - 1) / (m.sum() - 1)
        t = np.quantile(u[~m] @ s / m.sum(), 0.99)
        assert np.array_equal(out[m] == c, a > t)


def test_cluster_gate():
    x, truth = planted(2, 30, 16, seed=4)
    rng = np.random.default_rng(5)
    u = _unit(np.vstack([x, rng.standard_normal((140, 16))])).astype(np.float32)
    null = coherence_null(u, 0.99, 1000, seed=0)
    lab = np.full(200, -1, np.int32)
    lab[:60] = truth
    lab[60:90] = 2                                   # a random group of 30
    lab[90:95] = 3                                   # below the minimum size
    out = cluster_gate(u, lab, null, min_size=8)
    assert (out[:60] == truth).all() and (out[60:] == -1).all()
    assert (cluster_gate(u, np.zeros(200, np.int32), null, 2) == -1).all()   # one cluster of everything
    # the threshold interpolates the larger null on the grid
    n = CoherenceNull(np.array([2, 8]), np.array([0.5, 0.2]), np.array([0.4, 0.3]))
    assert n.threshold(np.array([2, 4, 8])) == pytest.approx([0.5, 0.4, 0.3])


def test_silhouette_never_raises_and_matches_sklearn():
    rng = np.random.default_rng(0)
    u = _unit(rng.standard_normal((5000, 6)))
    lab = np.zeros(5000, np.int64)
    lab[:3] = 1
    pick = np.random.RandomState(0).permutation(5000)[:50]
    assert (lab[pick] == 0).all()                    # the seeded sample holds one cluster
    assert silhouette(u, lab, 50, 0) is None          # sklearn would raise "Number of labels is 1"
    lab = rng.integers(0, 4, 5000)
    assert silhouette(u, lab, 300, 7) == pytest.approx(
        silhouette_score(u, lab, metric="cosine", sample_size=300, random_state=7), rel=1e-9)
    assert silhouette(u[:10], np.arange(10), 0, 0) is None    # every feature its own cluster


def test_layer_quality_by_hand():
    x, truth = planted(3, 20, 12, seed=2)
    vec = np.vstack([x, np.zeros((2, 12))]).astype(np.float32)     # two features without a vector
    lab = np.concatenate([truth, [-2, -2]]).astype(np.int32)
    lab[:5] = -1
    q = layer_quality(vec, lab, 0, 3, reruns=[lab.copy(), np.where(lab == 0, 1, np.where(lab == 1, 0, lab))])
    u = _unit(x)
    sh = np.random.default_rng(3).permutation(lab[:60])
    per = [_pairwise_mean(u[sh == c]) for c in range(3)]
    assert q["coherence_null"] == pytest.approx(np.mean(per))
    assert q["silhouette_null"] == pytest.approx(silhouette_score(u[sh >= 0], sh[sh >= 0], metric="cosine"))
    assert q["largest_share"] == pytest.approx(20 / 62) == largest_share(lab)
    assert q["has_structure"] is True and q["n_clusters"] == 3
    assert q["noise_frac"] == pytest.approx(5 / 60)
    # ARI is 1 for a relabelled copy, and the mean is over the reruns
    assert q["stability_ari"] == pytest.approx(1.0)
    assert layer_quality(vec, lab, 0, 3)["stability_ari"] is None
    none = layer_quality(vec, np.where(lab >= 0, -1, lab), 0, 3)
    assert none["has_structure"] is False and none["largest_share"] == 0.0 and none["silhouette"] is None


def test_greedy_null_against_a_loop():
    """greedy_quantiles grows each seed's group one row at a time (among the seed and its
    GREEDY_POOL - 1 nearest rows, the one with the largest summed cosine to the members):
    checked against that loop written plainly."""
    from saew.compute.clustering import gates

    u = _layer(n=120)
    sizes = np.array([2, 3, 5, 8, 200])
    got = gates.greedy_quantiles(u, sizes, 0.5, np.random.default_rng(4))
    best = gates.greedy_quantiles(u, sizes, 1.0, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    x = rng.permuted(np.asarray(u, np.float32), axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    seeds = rng.choice(120, 120, replace=False)         # every row a seed (n < GREEDY_SEEDS)
    x = x.astype(np.float64)
    vals = []
    for i in seeds:
        near = [int(j) for j in np.argsort(-(x @ x[i])) if j != i][:gates.GREEDY_POOL - 1]
        group, rest = [int(i)], near
        coh = {}
        while len(group) < 8:
            j = max(rest, key=lambda r: sum(x[r] @ x[g] for g in group))
            group.append(j)
            rest.remove(j)
            coh[len(group)] = _pairwise_mean(x[group])
        vals.append([coh[s] for s in sizes[:4]])
    assert np.allclose(got[:4], np.quantile(np.array(vals), 0.5, axis=0), atol=1e-5)
    assert np.allclose(best[:4], np.max(np.array(vals), axis=0), atol=1e-5)
    assert got[4] == -np.inf   # above GREEDY_POOL: the ball null alone


def test_greedy_null_finds_no_cluster_in_isotropic_rows(saew, lake):
    """--null greedy (the default, named): the layer of test_cli_structureless_layer (1,500
    isotropic 512-D rows), where UMAP + HDBSCAN's tightest group beats the kNN-ball null
    (--null search) on some CPUs, shows no cluster."""
    from tests.factories import make_sae, put_sae

    put_sae(lake, "r", 0, make_sae(d_in=512, d_sae=1500, seed=3))
    code, out, err = saew("cluster", "--release", "r", "--space", "decoder", "--null", "greedy")
    assert code == 0, err
    q = lake.query("SELECT n_clusters, has_structure FROM cluster_quality").to_pylist()
    assert q == [{"n_clusters": 0, "has_structure": False}]
