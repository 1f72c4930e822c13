"""Co-activation graphs, degree distributions, JS divergence and communities."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from saew.compute.activations import graphs
from tests.factories_coact import lake_files, put_activations


def test_npmi_by_hand():
    # p_ab = 0.1, p_a = 0.2, p_b = 0.25: ln(0.1 / 0.05) / -ln(0.1) = ln 2 / ln 10
    got = graphs.npmi(np.array([2, 0, 20, 4]), np.array([4, 4, 20, 10]), np.array([5, 5, 20, 8]), 20)
    assert abs(got[0] - math.log(2) / math.log(10)) < 1e-12
    assert got[1] == -1.0 and got[2] == 1.0       # never together; p_ab = 1
    assert abs(got[3]) < 1e-12                      # independent: p_ab = p_a p_b = 0.2


def test_degree_strength_against_networkx():
    rng = np.random.default_rng(0)
    a, b = np.triu_indices(12, 1)
    keep = rng.random(a.size) < 0.3
    n_ab = rng.integers(1, 6, a.size)[keep]
    n_f = np.r_[rng.integers(10, 30, 11), 0]         # feature 11 dead
    live = (n_f[a[keep]] > 0) & (n_f[b[keep]] > 0)
    fa, fb, n_ab = a[keep][live], b[keep][live], n_ab[live]
    g = graphs.coactivation_graph(fa, fb, n_ab, n_f, 60, threshold=0.05, min_count=2)
    deg, strength = graphs.degree_strength(g)
    ref = nx.Graph()
    ref.add_nodes_from(range(11))
    for x, y, c in zip(fa, fb, n_ab):
        w = math.log((c / 60) / ((n_f[x] / 60) * (n_f[y] / 60))) / -math.log(c / 60)
        if w > 0.05 and c >= 2:
            ref.add_edge(int(x), int(y), weight=w)
    assert g.node_id.tolist() == list(range(11))
    assert deg.tolist() == [ref.degree(v) for v in range(11)]
    assert np.allclose(strength, [ref.degree(v, weight="weight") for v in range(11)])
    assert g.n_edges == ref.number_of_edges()


def test_js_divergence_by_hand():
    assert graphs.js_divergence(np.array([1.0, 0]), np.array([0, 1.0])) == 1.0
    assert graphs.js_divergence(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == 0.0
    # P = (.5, .5), Q = (1, 0), M = (.75, .25):
    # KL(P||M) = .5 log2(.5/.75) + .5 log2(.5/.25); KL(Q||M) = log2(1/.75)
    want = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * 1.0 + math.log2(1 / 0.75))
    assert abs(graphs.js_divergence(np.array([0.5, 0.5]), np.array([1.0])) - want) < 1e-12
    assert graphs.degree_distribution(np.array([0, 2, 2, 1])).tolist() == [0.25, 0.25, 0.5]


def test_random_graph_degrees():
    i, j = graphs.pair_from_index(np.arange(50 * 49 // 2))
    assert ((i > j) & (j >= 0) & (i < 50)).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == 50 * 49 // 2
    for m in (0, 7, 300, 1000, 1225):                 # 1000 > half: complement path
        d = graphs.random_graph_degrees(50, m, np.random.default_rng(1))
        assert d.sum() == 2 * m and d.min() >= 0 and d.max() <= 49
        assert (d == graphs.random_graph_degrees(50, m, np.random.default_rng(1))).all()
    assert (graphs.random_graph_degrees(50, 1225, np.random.default_rng(2)) == 49).all()
    # G(n, m) degrees are ~ Binomial(n - 1, m / C(n, 2)): mean 2m / n
    d = graphs.random_graph_degrees(400, 8000, np.random.default_rng(3))
    assert abs(d.mean() - 40) < 1e-9 and 30 < d.var() < 50


def two_cliques() -> graphs.Graph:
    a, b = np.triu_indices(5, 1)
    src = np.r_[a, a + 5, 4]
    dst = np.r_[b, b + 5, 5]
    w = np.r_[np.full(20, 0.8), 0.1]
    return graphs.Graph(np.arange(10, dtype=np.int32), src, dst, w)


def test_communities_planted_and_seeded():
    g = two_cliques()
    ref = nx.Graph()
    ref.add_weighted_edges_from(zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist()))
    for algo in ("leiden", "louvain"):
        member, q = graphs.communities(g, algo, seed=3)
        assert member.tolist() == [0] * 5 + [1] * 5
        sets = [set(np.flatnonzero(member == c).tolist()) for c in range(2)]
        assert abs(q - nx.community.modularity(ref, sets, weight="weight")) < 1e-9
        again, _ = graphs.communities(g, algo, seed=3)
        assert (again == member).all()
    assert graphs.relabel_by_size(np.array([7, 3, 3, 9, 9])).tolist() == [2, 0, 0, 1, 1]


def grouped(tokens: int, seed: int, d: int = 12) -> np.ndarray:
    """Features 0-4 fire together on the first half, 5-9 on the second; 10 random; 11 dead."""
    rng = np.random.default_rng(seed)
    m = np.zeros((tokens, d), np.float32)
    half = tokens // 2
    m[:half, :5] = (rng.random((half, 5)) < 0.6) * rng.uniform(0.5, 2, (half, 5))
    m[half:, 5:10] = (rng.random((tokens - half, 5)) < 0.6) * rng.uniform(0.5, 2, (tokens - half, 5))
    m[:, 10] = (rng.random(tokens) < 0.3) * 1.0
    m[-3:] = 0                                         # tokens where nothing fires
    return m


def table(lake, sql, params):
    t = lake.query(sql, params)
    return {c: t.column(c).to_pylist() for c in t.column_names}


def test_communities_command_end_to_end(saew, lake):
    ms = {}
    for rel, seed in (("a", 1), ("b", 2)):
        for layer in (0, 1):
            ms[rel, layer] = grouped(120, seed + 10 * layer)
            put_activations(lake, rel, layer, ms[rel, layer])
        assert saew("coactivation", "--release", rel)[0] == 0
    assert saew("correlate", "--release", "a")[0] == 0
    code, out, err = saew("communities", "--release", "a", "--other-release", "b", "--seed", "5")
    assert code == 0, err
    assert "JS divergence vs b" in out and "correlation graph" in out

    # graph_nodes against a dense numpy NPMI graph
    m = ms["a", 0]
    bm = (m > 0).astype(np.int64)
    n_f, c = bm.sum(0), bm.T @ bm
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.log((c / 120) / np.outer(n_f / 120, n_f / 120)) / -np.log(c / 120)
    adj = (c > 0) & (w > 0) & ~np.eye(12, dtype=bool)
    nodes = table(lake, "SELECT * FROM graph_nodes WHERE release = 'a' AND layer = 0 ORDER BY feature", [])
    assert nodes["feature"] == list(range(11))        # feature 11 is dead: not a node
    assert nodes["n_active"] == n_f[:11].tolist()
    assert nodes["degree"] == adj.sum(1)[:11].tolist()
    assert np.allclose(nodes["strength"], np.where(adj, w, 0).sum(1)[:11])

    degs = table(lake, "SELECT * FROM graph_degrees WHERE release = 'a' AND layer = 0 ORDER BY degree", [])
    assert sum(degs["n_nodes"]) == sum(degs["n_nodes_random"]) == 11
    assert sum(k * n for k, n in zip(degs["degree"], degs["n_nodes_random"])) == adj[:11, :11].sum()

    div = table(lake, "SELECT * FROM graph_divergence ORDER BY layer", [])
    assert saew("communities", "--release", "b", "--graph", "coactivation")[0] == 0
    assert div["layer"] == [0, 1] and div["other_release"] == ["b", "b"]
    other = table(lake, "SELECT degree FROM graph_nodes WHERE release = 'b' AND layer = 0", [])
    p = np.bincount(nodes["degree"]) / 11
    q = np.bincount(other["degree"]) / len(other["degree"])
    assert abs(div["js_divergence"][0] - graphs.js_divergence(p, q)) < 1e-12
    assert 0 <= div["js_random_baseline"][0] <= 1 and div["npmi_threshold"] == [0.0, 0.0]

    co = table(lake, "SELECT feature, community, modularity, algorithm FROM communities "
               "WHERE release = 'a' AND graph = 'coactivation' AND layer = 0 ORDER BY feature", [])
    comm = co["community"]
    assert len(set(comm[:5])) == 1 and len(set(comm[5:10])) == 1 and comm[0] != comm[5]
    assert co["algorithm"][0] == "leiden" and co["modularity"][0] > 0.2
    corr = table(lake, "SELECT layer, feature, community FROM communities "
                 "WHERE release = 'a' AND graph = 'correlation' ORDER BY layer, feature", [])
    assert set(corr["layer"]) == {0, 1} and len(corr["feature"]) > 0

    # seeded: a re-run gives the same rows (and replaces, never duplicates)
    before = lake.query("SELECT * FROM communities ORDER BY ALL")
    assert saew("communities", "--release", "a", "--other-release", "b", "--seed", "5")[0] == 0
    assert lake.query("SELECT * FROM communities ORDER BY ALL").equals(before)


def test_bad_inputs(saew, lake, home):
    from tests.factories import make_sae, put_sae

    m = grouped(40, 0)
    put_activations(lake, "a", 0, m)
    assert saew("coactivation", "--release", "a")[0] == 0
    put_activations(lake, "c", 3, m)                   # activations but no coactivation yet
    put_sae(lake, "e", 0, make_sae(d_sae=12))
    cases = [
        (("--release", "a", "--npmi-threshold", "-0.5"), "--npmi-threshold -0.5"),
        (("--release", "a", "--pearson-threshold", "1"), "--pearson-threshold 1.0"),
        (("--release", "a", "--min-count", "0"), "--min-count 0"),
        (("--release", "a", "--other-release", "a"), "same as --release"),
        (("--release", "a", "--other-release", "zz"), "no SAE ingested"),
        (("--release", "a", "--other-release", "c"), "no layer with coactivations in both"),
        (("--release", "a", "--graph", "correlation"), "run `saew correlate` first"),
        (("--release", "c", "--graph", "coactivation"), "run `saew coactivation` first"),
        (("--release", "e"), "no coactivations or correlations"),
        (("--release", "a/b"), "release names must match"),
    ]
    for args, needle in cases:
        files = lake_files(home)
        code, out, err = saew("communities", *args)
        assert code == 2, (args, out, err)
        assert err.startswith("saew: error: ") and err.count("\n") == 1 and needle in err, err
        assert lake_files(home) == files


def test_npmi_agrees_with_the_dbt_mart():
    """One NPMI: ``graphs.npmi`` and dbt's ``fct_coactivation_pairs`` give the same value on
    the same counts (n_ab from the mart, n_a / n_b / N from the activations), p_ab = 1 included."""
    from tests.factories_dbt import built_small_warehouse, mart

    home, w = built_small_warehouse()
    for layer, x in w.activations.items():
        n_f = (x > 0).sum(0)
        rows = mart(home, "select feature_a, feature_b, n_ab, npmi from fct_coactivation_pairs "
                          "where release = ? and layer = ? order by feature_a, feature_b", [w.release, layer])
        a, b, n_ab, got = (np.array([r[c] for r in rows]) for c in ("feature_a", "feature_b", "n_ab", "npmi"))
        assert len(rows) > 0
        want = graphs.npmi(n_ab, n_f[a], n_f[b], w.n_tokens)
        np.testing.assert_allclose(got.astype(float), want, rtol=1e-12, atol=1e-12)
        if layer == 0:
            assert (want == 1.0).any()  # features 0 and 1 fire on every token


def _three_layers(lake) -> None:
    for rel, seed in (("a", 1), ("b", 2)):
        for layer in range(3):
            put_activations(lake, rel, layer, grouped(120, seed + 10 * layer))
    from tests.factories import run_saew

    for argv in (["coactivation", "--release", "a"], ["coactivation", "--release", "b"],
                 ["correlate", "--release", "a"]):
        assert run_saew(lake.home, *argv)[0] == 0


def test_a_failed_communities_keeps_the_layers_before_it_and_the_rerun_does_the_rest(saew, lake, monkeypatch,
                                                                                     tmp_path):
    """Each co-activation layer and the correlation graph are units: a failure at layer 1 keeps
    layer 0's rows, the re-run computes layers 1, 2 and the correlation graph only, and the
    tables equal those of one uninterrupted run."""
    import saew.compute.activations.communities as step
    from saew.storage.lake import Lake

    _three_layers(lake)
    args = ["communities", "--release", "a", "--other-release", "b", "--seed", "5", "--workers", "1"]
    real, calls, corr = step._layer_job, [], []
    real_corr = step._correlation

    def failing(home, release, layer, *rest):
        calls.append(layer)
        if layer == 1:
            raise RuntimeError("killed at layer 1")
        return real(home, release, layer, *rest)

    monkeypatch.setattr(step, "_layer_job", failing)
    monkeypatch.setattr(step, "_correlation", lambda *a: (corr.append(1), real_corr(*a))[1])
    with pytest.raises(RuntimeError, match="killed at layer 1"):
        saew(*args)
    assert calls == [0, 1] and corr == []
    assert lake.query("SELECT DISTINCT layer FROM communities ORDER BY 1").column("layer").to_pylist() == [0]
    assert lake.query("SELECT layer FROM graph_divergence").column("layer").to_pylist() == [0]
    assert lake.query("SELECT status, units FROM runs WHERE command = 'communities'").to_pylist() == [
        {"status": "partial", "units": ["layer=0"]}]

    calls.clear()
    monkeypatch.setattr(step, "_layer_job", lambda h, r, layer, *rest: (calls.append(layer), real(h, r, layer, *rest))[1])
    code, out, err = saew(*args)
    assert code == 0, err
    assert calls == [1, 2] and corr == [1] and "kept 1 unit(s)" in out

    other = Lake(tmp_path / "other")
    _three_layers(other)
    assert saew(*args, home_dir=tmp_path / "other")[0] == 0
    for t in ("communities", "graph_divergence", "graph_nodes", "graph_degrees"):
        a = lake.query(f"SELECT * FROM {t} WHERE release = 'a' ORDER BY ALL").to_pylist()
        assert len(a) > 0 and a == other.query(f"SELECT * FROM {t} WHERE release = 'a' ORDER BY ALL").to_pylist(), t
