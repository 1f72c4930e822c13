"""``saew ingest clusters|matches|transport|activations``: results from elsewhere, same tables."""
from __future__ import annotations

import numpy as np
import pytest

from tests.factories import make_sae, put_sae
from tests.formats import write_labels, write_sparse, write_table
from saew.storage.lake import Lake


@pytest.fixture
def rel(lake: Lake) -> Lake:
    """Release r: layers 2, 3 (d_sae 10, 12, jumprelu then relu) and 5 (d_sae 10)."""
    put_sae(lake, "r", 2, make_sae(6, 10, "jumprelu", seed=0))
    put_sae(lake, "r", 3, make_sae(6, 12, "relu", seed=1))
    put_sae(lake, "r", 5, make_sae(6, 10, "relu", seed=2))
    return lake


def _bad(saew, lake: Lake, table: str, *args, expect: str) -> None:
    code, out, err = saew("ingest", *args)
    assert code == 2, (out, err)
    assert err.startswith("saew: error: ") and err.count("\n") == 1 and expect in err, err
    assert not lake.has_data(table)


def _rows(lake: Lake, sql: str) -> list[dict]:
    return lake.query(sql).to_pylist()


# ---------------------------------------------------------------- clusters
def test_clusters_npy_and_reingest(saew, rel, tmp_path):
    labels = np.array([0, 0, 1, -1, 1, 2, -2, 0, 1, -1])
    f = write_labels(tmp_path / "labels" / "layer_2.npy", labels)
    for _ in range(2):
        code, out, err = saew("ingest", "clusters", f, "--release", "r", "--layer", "2", "--space", "decoder")
        assert code == 0, err
    rows = _rows(rel, "SELECT * FROM clusters ORDER BY feature")
    assert [r["cluster"] for r in rows] == labels.tolist() and [r["feature"] for r in rows] == list(range(10))
    assert all(r["probability"] is None and r["x"] is None and r["space"] == "decoder" for r in rows)


def test_clusters_csv_with_optional_columns(saew, rel, tmp_path):
    f = write_table(tmp_path / "c.csv", {"feature": [4, 1, 2], "cluster": [1, 0, -1], "probability": [0.5, 1.0, 0.0],
                                          "x": [0.1, 0.2, 0.3], "y": [1.0, 2.0, 3.0]})
    assert saew("ingest", "clusters", f, "--release", "r", "--layer", "3", "--space", "text")[0] == 0
    rows = _rows(rel, "SELECT feature, cluster, probability, x, y FROM clusters ORDER BY feature")
    assert [(r["feature"], r["cluster"]) for r in rows] == [(1, 0), (2, -1), (4, 1)]
    assert rows[2]["probability"] == pytest.approx(0.5) and rows[0]["y"] == pytest.approx(2.0)


def test_clusters_bad(saew, rel, tmp_path):
    short = write_labels(tmp_path / "short.npy", np.zeros(9, int))
    _bad(saew, rel, "clusters", "clusters", short, "--release", "r", "--layer", "2", "--space", "d",
         expect="label array has shape (9,), expected (10,)")
    _bad(saew, rel, "clusters", "clusters", short, "--release", "r", "--layer", "4", "--space", "d",
         expect="no SAE at layer 4")
    badlab = write_labels(tmp_path / "bad.npy", np.full(10, -3))
    _bad(saew, rel, "clusters", "clusters", badlab, "--release", "r", "--layer", "2", "--space", "d",
         expect="cluster label -3 is invalid")
    fl = write_labels(tmp_path / "fl.npy", np.full(10, 0.5))
    _bad(saew, rel, "clusters", "clusters", fl, "--release", "r", "--layer", "2", "--space", "d",
         expect="must hold integers")
    out = write_table(tmp_path / "o.parquet", {"feature": [10], "cluster": [0]})
    _bad(saew, rel, "clusters", "clusters", out, "--release", "r", "--layer", "2", "--space", "d",
         expect="feature 10 is out of range [0, 10)")
    dup = write_table(tmp_path / "dup.csv", {"feature": [1, 1], "cluster": [0, 1]})
    _bad(saew, rel, "clusters", "clusters", dup, "--release", "r", "--layer", "2", "--space", "d",
         expect="feature 1 appears 2 times")
    corrupt = tmp_path / "c.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    _bad(saew, rel, "clusters", "clusters", corrupt, "--release", "r", "--layer", "2", "--space", "d",
         expect="c.npy: not a readable .npy")
    _bad(saew, rel, "clusters", "clusters", tmp_path / "none.npy", "--release", "r", "--layer", "2",
         "--space", "d", expect="none.npy: no such file")


# ---------------------------------------------------------------- matches
def test_matches_npy_costs_from_features(saew, rel, tmp_path):
    from saew.storage.saes import load_sae

    perm = np.array([3, -1, 0, 11, 5, 7, 1, -1, 2, 4])
    f = write_labels(tmp_path / "permutations" / "P_02_03.npy", perm)
    for _ in range(2):
        code, out, err = saew("ingest", "matches", f, "--release", "r", "--space", "decoder", "--method", "folded")
        assert code == 0, err
    rows = _rows(rel, "SELECT * FROM matches ORDER BY src_feature")
    assert [(r["src_feature"], r["dst_feature"]) for r in rows] == [(i, j) for i, j in enumerate(perm) if j >= 0]
    assert {r["src_layer"] for r in rows} == {2} and {r["dst_layer"] for r in rows} == {3}
    # hand computation of the folded cost (contract 5) and the decoder cosine
    a, b = load_sae(rel, "r", 2), load_sae(rel, "r", 3)
    for r in rows:
        i, j = r["src_feature"], r["dst_feature"]
        th = a.threshold[i]
        want = (np.sum((th * a.w_dec[i].astype(np.float64) - b.w_dec[j]) ** 2)
                + np.sum((a.w_enc[:, i].astype(np.float64) / th - b.w_enc[:, j]) ** 2)
                + (a.b_enc[i] / th - b.b_enc[j]) ** 2)
        assert r["cost"] == pytest.approx(want, rel=1e-5)
        cos = a.w_dec[i] @ b.w_dec[j] / np.linalg.norm(a.w_dec[i]) / np.linalg.norm(b.w_dec[j])
        assert r["cosine"] == pytest.approx(cos, abs=1e-6)


def test_matches_csv_default_dst_is_next_ingested_layer(saew, rel, tmp_path):
    f = write_table(tmp_path / "m.parquet", {"src_feature": [0, 1, 2], "dst_feature": [2, 1, -1], "cost": [9., 9., 9.]})
    assert saew("ingest", "matches", f, "--release", "r", "--src-layer", "3", "--space", "text", "--method", "m")[0] == 0
    rows = _rows(rel, "SELECT src_layer, src_feature, dst_layer, dst_feature, cost FROM matches ORDER BY src_feature")
    assert [(r["src_layer"], r["dst_layer"], r["src_feature"], r["dst_feature"]) for r in rows] == [(3, 5, 0, 2), (3, 5, 1, 1)]
    assert all(r["cost"] != 9.0 for r in rows)


def test_matches_bad(saew, rel, tmp_path):
    args = ("--release", "r", "--src-layer", "2", "--space", "decoder", "--method", "folded")
    nonbij = write_labels(tmp_path / "nb.npy", np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]))
    _bad(saew, rel, "matches", "matches", nonbij, *args, expect="destination feature (not one-to-one) 0 appears 2 times")
    oor = write_labels(tmp_path / "oor.npy", np.array([12, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
    _bad(saew, rel, "matches", "matches", oor, *args, expect="dst_feature 12 is out of range [0, 12)")
    neg = write_labels(tmp_path / "neg.npy", np.array([-2, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
    _bad(saew, rel, "matches", "matches", neg, *args, expect="entry -2 is out of range")
    short = write_labels(tmp_path / "short.npy", np.arange(5))
    _bad(saew, rel, "matches", "matches", short, *args, expect="permutation has shape (5,), expected (10,)")
    dsrc = write_table(tmp_path / "d.csv", {"src_feature": [1, 1], "dst_feature": [0, 2]})
    _bad(saew, rel, "matches", "matches", dsrc, *args, expect="src_feature 1 appears 2 times")
    last = write_labels(tmp_path / "last.npy", np.arange(10))
    _bad(saew, rel, "matches", "matches", last, "--release", "r", "--src-layer", "5", "--space", "d",
         "--method", "m", expect="last ingested layer")
    _bad(saew, rel, "matches", "matches", last, "--release", "r", "--src-layer", "2", "--dst-layer", "4",
         "--space", "d", "--method", "m", expect="no SAE at layer 4")
    _bad(saew, rel, "matches", "matches", last, "--release", "r", "--space", "d", "--method", "m",
         expect="pass --src-layer")


# ---------------------------------------------------------------- transport
def test_transport_csv_and_npz(saew, rel, tmp_path):
    f = write_table(tmp_path / "t.csv", {"src_cluster": [0, 0, -1], "dst_cluster": [1, -1, 0], "mass": [3.0, 1.0, 0.0]})
    assert saew("ingest", "transport", f, "--release", "r", "--space", "decoder", "--src-layer", "2", "--solver", "emd")[0] == 0
    rows = _rows(rel, "SELECT src_cluster, dst_layer, dst_cluster, mass, cost FROM transport ORDER BY src_cluster, dst_cluster")
    assert [(r["src_cluster"], r["dst_cluster"], r["mass"]) for r in rows] == [(0, -1, 1.0), (0, 1, 3.0)]
    assert all(r["cost"] is None and r["dst_layer"] == 3 for r in rows)

    plan = np.array([[0.2, 0.0], [0.1, 0.7]])
    np.savez(tmp_path / "p.npz", plan=plan, src_clusters=np.array([-1, 4]), dst_clusters=np.array([0, 2]),
             cost=np.array([[0.5, 0.6], [0.7, 0.8]]))
    for _ in range(2):
        assert saew("ingest", "transport", tmp_path / "p.npz", "--release", "r", "--space", "text",
                    "--src-layer", "3", "--solver", "sinkhorn", "--mass-unit", "fraction")[0] == 0
    rows = _rows(rel, "SELECT src_cluster, dst_cluster, mass, cost FROM transport WHERE space='text' ORDER BY src_cluster, dst_cluster")
    assert [(r["src_cluster"], r["dst_cluster"]) for r in rows] == [(-1, 0), (4, 0), (4, 2)]
    np.testing.assert_allclose([r["mass"] for r in rows], [0.2 * 12, 0.1 * 12, 0.7 * 12])
    np.testing.assert_allclose([r["cost"] for r in rows], [0.5, 0.7, 0.8])


def test_transport_bad(saew, rel, tmp_path):
    args = ("--release", "r", "--space", "decoder", "--src-layer", "2", "--solver", "emd")
    neg = write_table(tmp_path / "n.csv", {"src_cluster": [0, 1], "dst_cluster": [0, 1], "mass": [1.0, -0.5]})
    _bad(saew, rel, "transport", "transport", neg, *args, expect="negative transport mass -0.5")
    nan = write_table(tmp_path / "nan.parquet", {"src_cluster": [0], "dst_cluster": [0], "mass": [np.inf]})
    _bad(saew, rel, "transport", "transport", nan, *args, expect="mass holds NaN or Inf")
    dup = write_table(tmp_path / "dup.csv", {"src_cluster": [0, 0], "dst_cluster": [1, 1], "mass": [1.0, 2.0]})
    _bad(saew, rel, "transport", "transport", dup, *args, expect="pair (0, 1) appears more than once")
    np.savez(tmp_path / "shape.npz", plan=np.ones((2, 3)), src_clusters=np.arange(2), dst_clusters=np.arange(2))
    _bad(saew, rel, "transport", "transport", tmp_path / "shape.npz", *args, expect="plan has shape (2, 3), expected (2, 2)")
    miss = write_table(tmp_path / "m.csv", {"src_cluster": [0], "dst_cluster": [0]})
    _bad(saew, rel, "transport", "transport", miss, *args, expect="missing column(s) mass")
    broken = tmp_path / "b.npz"
    broken.write_bytes(b"PK\x03\x04 not really")
    _bad(saew, rel, "transport", "transport", broken, *args, expect="b.npz: not a readable .npz")


# ---------------------------------------------------------------- activations
def test_activations_sparse_npz(saew, rel, tmp_path):
    dense = np.zeros((7, 10), np.float32)
    dense[0, 3], dense[2, 0], dense[2, 9], dense[6, 4] = 1.5, 0.25, 3.0, 2.0
    for i, fmt in enumerate(["csr", "csc", "coo"]):
        f = write_sparse(tmp_path / f"a{i}.npz", dense, fmt)
        code, _, err = saew("ingest", "activations", f, "--release", "r", "--layer", "2")
        assert code == 0, err
        rows = _rows(rel, "SELECT token_id, feature, value FROM activations ORDER BY token_id, feature")
        assert [(r["token_id"], r["feature"], r["value"]) for r in rows] == [(0, 3, 1.5), (2, 0, 0.25), (2, 9, 3.0), (6, 4, 2.0)]
    sets = _rows(rel, "SELECT * FROM activation_sets")
    assert len(sets) == 1 and sets[0]["n_tokens"] == 7 and sets[0]["source"] == "ingest" and sets[0]["run_id"]


def test_activations_parquet_needs_n_tokens(saew, rel, tmp_path):
    f = write_table(tmp_path / "a.parquet", {"token_id": [5, 1, 1], "feature": [11, 0, 2], "value": [1.0, 0.0, 2.5]})
    _bad(saew, rel, "activations", "activations", f, "--release", "r", "--layer", "3", expect="needs --n-tokens")
    assert saew("ingest", "activations", f, "--release", "r", "--layer", "3", "--n-tokens", "100")[0] == 0
    rows = _rows(rel, "SELECT token_id, feature, value FROM activations ORDER BY token_id, feature")
    assert [(r["token_id"], r["feature"], r["value"]) for r in rows] == [(1, 2, 2.5), (5, 11, 1.0)]
    assert _rows(rel, "SELECT n_tokens FROM activation_sets")[0]["n_tokens"] == 100


def test_activations_bad(saew, rel, tmp_path):
    wide = write_sparse(tmp_path / "w.npz", np.ones((3, 11), np.float32))
    _bad(saew, rel, "activations", "activations", wide, "--release", "r", "--layer", "2",
         expect="matrix has shape (3, 11), expected (n_tokens, 10)")
    d = np.zeros((3, 10), np.float32)
    d[1, 1] = np.nan
    nan = write_sparse(tmp_path / "nan.npz", d)
    _bad(saew, rel, "activations", "activations", nan, "--release", "r", "--layer", "2", expect="NaN or Inf")
    np.savez(tmp_path / "dense.npz", x=np.ones(3))
    _bad(saew, rel, "activations", "activations", tmp_path / "dense.npz", "--release", "r", "--layer", "2",
         expect="not a scipy sparse .npz")
    dup = write_table(tmp_path / "dup.parquet", {"token_id": [1, 1], "feature": [2, 2], "value": [1.0, 2.0]})
    _bad(saew, rel, "activations", "activations", dup, "--release", "r", "--layer", "2", "--n-tokens", "5",
         expect="token 1 feature 2 appears more than once")
    far = write_table(tmp_path / "far.parquet", {"token_id": [5], "feature": [2], "value": [1.0]})
    _bad(saew, rel, "activations", "activations", far, "--release", "r", "--layer", "2", "--n-tokens", "5",
         expect="token_id 5 is out of range [0, 5)")
    ok = write_sparse(tmp_path / "ok.npz", np.ones((3, 10), np.float32))
    _bad(saew, rel, "activations", "activations", ok, "--release", "r", "--layer", "2", "--n-tokens", "2",
         expect="smaller than the matrix's 3 rows")
    _bad(saew, rel, "activations", "activations", ok, "--release", "r", "--layer", "9", expect="no SAE at layer 9")
