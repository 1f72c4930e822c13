"""saew transport: the contract's cost, POT's exact plan, feature-unit masses, bad inputs."""
from __future__ import annotations

import numpy as np
import ot
import pytest

from tests.factories import make_sae, put_sae
from tests.factories_cluster import put_clusters, put_embeddings

R = "r1"


def _labels(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, k, n)
    lab[rng.random(n) < 0.15] = -1
    lab[rng.random(n) < 0.05] = -2
    return lab.astype(np.int32)


def _oracle(lab0, u0, lab1, u1):
    """The contract's buckets, weights and cost, built cluster by cluster (independent code)."""
    def side(lab, u):
        ids = sorted(set(lab[lab >= 0].tolist()))
        cents = [u[lab == c].mean(axis=0) for c in ids]
        sizes = [float((lab == c).sum()) for c in ids]
        if (lab < 0).any():
            ids.append(-1)
            sizes.append(float((lab < 0).sum()))
        return ids, np.array(sizes) / len(lab), cents

    ia, wa, ca = side(lab0, u0)
    ib, wb, cb = side(lab1, u1)
    block = np.array([[1 - x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in cb] for x in ca])
    med = np.median(block)
    c = np.full((len(ia), len(ib)), med)
    c[:len(ca), :len(cb)] = block
    return ia, ib, wa, wb, c


@pytest.fixture
def three_layers(lake):
    saes = [make_sae(8, 40, seed=0), make_sae(8, 40, seed=1), make_sae(8, 50, seed=2)]
    labs = [_labels(40, 5, 10), _labels(40, 6, 11), _labels(50, 4, 12)]
    for L, (p, lab) in enumerate(zip(saes, labs)):
        put_sae(lake, R, L, p)
        put_clusters(lake, R, L, "decoder", lab)
    return saes, labs


def _plan(lake, solver: str, src_layer: int, space: str = "decoder"):
    return lake.query("SELECT src_cluster, dst_cluster, mass, cost, dst_layer FROM transport "
                      "WHERE release = ? AND space = ? AND solver = ? AND src_layer = ?",
                      [R, space, solver, src_layer]).to_pylist()


def _unit(w):
    w = w.astype(np.float64)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def test_emd_matches_pot_and_masses_are_sizes(saew, lake, three_layers):
    saes, labs = three_layers
    code, out, err = saew("transport", "--release", R, "--space", "decoder")
    assert code == 0, err
    for l0 in (0, 1):
        l1 = l0 + 1
        ia, ib, wa, wb, c = _oracle(labs[l0], _unit(saes[l0].w_dec), labs[l1], _unit(saes[l1].w_dec))
        rows = _plan(lake, "emd", l0)
        assert {r["dst_layer"] for r in rows} == {l1}
        n0, n1 = len(labs[l0]), len(labs[l1])
        # objective equals POT's exact optimum on the contract's cost
        got = sum(r["mass"] / n0 * r["cost"] for r in rows)
        assert got == pytest.approx(ot.emd2(wa, wb, c), rel=1e-9, abs=1e-12)
        # cost column is C_ab
        pos_a, pos_b = {a: i for i, a in enumerate(ia)}, {b: j for j, b in enumerate(ib)}
        for r in rows:
            assert r["cost"] == pytest.approx(c[pos_a[r["src_cluster"]], pos_b[r["dst_cluster"]]])
            assert r["mass"] >= 1e-9
        # rows sum to bucket sizes; columns to n_l * weight_b
        for a, w in zip(ia, wa):
            assert sum(r["mass"] for r in rows if r["src_cluster"] == a) == pytest.approx(w * n0)
        for b, w in zip(ib, wb):
            assert sum(r["mass"] for r in rows if r["dst_cluster"] == b) == pytest.approx(w * n0)
        if n0 != n1:  # destination sizes scaled by n_l / n_l'
            b0 = ib[0]
            size_b0 = float((labs[l1] == b0).sum())
            assert sum(r["mass"] for r in rows if r["dst_cluster"] == b0) == \
                pytest.approx(size_b0 * n0 / n1)


def test_sinkhorn_rows_and_rerun_replaces(saew, lake, three_layers):
    saes, labs = three_layers
    assert saew("transport", "--release", R, "--space", "decoder", "--solver", "sinkhorn")[0] == 0
    rows = _plan(lake, "sinkhorn", 0)
    ia, ib, wa, wb, c = _oracle(labs[0], _unit(saes[0].w_dec), labs[1], _unit(saes[1].w_dec))
    for a, w in zip(ia, wa):
        assert sum(r["mass"] for r in rows if r["src_cluster"] == a) == pytest.approx(w * 40, rel=1e-3)
    reg = 0.05 * np.median(c[:-1, :-1])
    ref = ot.sinkhorn(wa, wb, c, reg=reg, numItermax=10_000, stopThr=1e-9)
    got = sum(r["mass"] / 40 * r["cost"] for r in rows)
    assert got == pytest.approx(float((ref * c).sum()), rel=1e-6)
    assert got >= ot.emd2(wa, wb, c) - 1e-12
    n = lake.query("SELECT count(*) AS n FROM transport").column("n")[0].as_py()
    assert saew("transport", "--release", R, "--space", "decoder", "--solver", "sinkhorn")[0] == 0
    assert lake.query("SELECT count(*) AS n FROM transport").column("n")[0].as_py() == n


def test_text_space_with_missing_embeddings(saew, lake):
    rng = np.random.default_rng(3)
    labs = []
    for L in (0, 1):
        put_sae(lake, R, L, make_sae(8, 30, seed=L))
        feats = np.sort(rng.choice(30, 22, replace=False))   # 8 features without description
        emb = rng.standard_normal((22, 12)).astype(np.float32)
        put_embeddings(lake, R, L, feats, emb)
        lab = np.full(30, -2, np.int32)
        lab[feats] = rng.integers(-1, 3, 22)
        put_clusters(lake, R, L, "text", lab)
        full = np.zeros((30, 12), np.float32)
        full[feats] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        labs.append((lab, full))
    code, _, err = saew("transport", "--release", R, "--space", "text")
    assert code == 0, err
    rows = _plan(lake, "emd", 0, "text")
    ia, ib, wa, wb, c = _oracle(labs[0][0], labs[0][1], labs[1][0], labs[1][1])
    assert sum(r["mass"] / 30 * r["cost"] for r in rows) == pytest.approx(ot.emd2(wa, wb, c))
    unclustered = float((labs[0][0] < 0).sum())   # -1 and -2 members share bucket -1
    assert sum(r["mass"] for r in rows if r["src_cluster"] == -1) == pytest.approx(unclustered)


def _nothing_written(lake):
    return not lake.has_data("transport") and \
        lake.query("SELECT count(*) AS n FROM runs WHERE command = 'transport'").column("n")[0].as_py() == 0


@pytest.mark.parametrize("case", ["no_release", "one_layer", "no_clusters", "text_no_embeddings"])
def test_bad_inputs(saew, lake, case):
    if case != "no_release":
        put_sae(lake, R, 0, make_sae(8, 20, seed=0))
        put_clusters(lake, R, 0, "decoder", np.zeros(20, np.int32))
    if case in ("no_clusters", "text_no_embeddings"):
        put_sae(lake, R, 1, make_sae(8, 20, seed=1))
    space = "text" if case == "text_no_embeddings" else "decoder"
    code, out, err = saew("transport", "--release", R, "--space", space)
    assert code == 2
    assert err.startswith("saew: error: ") and err.count("\n") == 1
    assert _nothing_written(lake)


def test_layer_without_clusters_uses_unit_median(saew, lake):
    """All features unclustered at l+1: the cluster block is empty, its median taken as 1.0."""
    put_sae(lake, R, 0, make_sae(8, 12, seed=0))
    put_sae(lake, R, 1, make_sae(8, 12, seed=1))
    put_clusters(lake, R, 0, "decoder", np.array([0] * 6 + [1] * 4 + [-1, -2]))
    put_clusters(lake, R, 1, "decoder", np.full(12, -1))
    assert saew("transport", "--release", R, "--space", "decoder")[0] == 0
    rows = sorted((r["src_cluster"], r["dst_cluster"], r["mass"], r["cost"]) for r in _plan(lake, "emd", 0))
    assert rows == [(-1, -1, pytest.approx(2.0), 1.0), (0, -1, pytest.approx(6.0), 1.0),
                    (1, -1, pytest.approx(4.0), 1.0)]
