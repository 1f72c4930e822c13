"""`saew coactivation`: pair counts n_ab against numpy's B^T B on small known matrices."""
from __future__ import annotations

import numpy as np
from tests.factories_coact import lake_files, put_activations, sparse_matrix


def numpy_pairs(m: np.ndarray) -> set[tuple[int, int, int]]:
    """The oracle: strict upper triangle of B^T B (B = m > 0), pairs with n_ab > 0."""
    b = (m > 0).astype(np.int64)
    c = b.T @ b
    i, j = np.triu_indices(m.shape[1], 1)
    keep = c[i, j] > 0
    return set(zip(i[keep].tolist(), j[keep].tolist(), c[i, j][keep].tolist()))


def stored(lake, release: str, layer: int) -> list[tuple[int, int, int]]:
    t = lake.query("SELECT feature_a, feature_b, n_ab FROM coactivations WHERE release = ? "
                   "AND layer = ? ORDER BY feature_a, feature_b", [release, layer])
    return list(zip(*(t.column(c).to_pylist() for c in t.column_names)))


KNOWN = np.array([
    # f0   f1   f2   f3   f4 (dead)
    [1.0, 2.0, 0.0, 0.0, 0.0],   # t0: 0-1
    [0.5, 1.0, 3.0, 0.0, 0.0],   # t1: 0-1, 0-2, 1-2
    [0.0, 0.0, 0.0, 0.0, 0.0],   # t2: nothing fires
    [0.0, 1.0, 0.0, 2.0, 0.0],   # t3: 1-3
    [0.0, 0.0, 1.0, 1.0, -0.5],  # t4: 2-3 (f4 negative: inactive)
    [2.0, 0.0, 0.0, 0.0, 0.0],   # t5: f0 alone
], np.float32)


def test_known_matrix_by_hand(saew, lake):
    put_activations(lake, "r", 0, KNOWN)
    code, out, err = saew("coactivation", "--release", "r")
    assert code == 0, err
    # hand count: 0-1 on t0,t1; 0-2 on t1; 1-2 on t1; 1-3 on t3; 2-3 on t4; 0-3 never; f4 dead
    assert stored(lake, "r", 0) == [(0, 1, 2), (0, 2, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1)]
    assert set(stored(lake, "r", 0)) == numpy_pairs(KNOWN)
    assert "5 pairs" in out


def test_random_layers_match_numpy_and_sparse_token_ids(saew, lake):
    m0 = sparse_matrix(300, 40, 0.12, seed=1)
    m0[:, 7] = 0          # a dead feature
    m0[50:60] = 0         # tokens where nothing fires
    m1 = sparse_matrix(200, 25, 0.2, seed=2)
    ids = np.sort(np.random.default_rng(3).choice(10**12, size=200, replace=False))  # np.unique path
    put_activations(lake, "r", 0, m0)
    put_activations(lake, "r", 3, m1, token_ids=ids)
    code, _, err = saew("coactivation", "--release", "r")
    assert code == 0, err
    assert set(stored(lake, "r", 0)) == numpy_pairs(m0)
    assert set(stored(lake, "r", 3)) == numpy_pairs(m1)
    got = lake.query("SELECT count(*) AS n, count(DISTINCT (layer, feature_a, feature_b)) AS k, "
                     "bool_and(feature_a < feature_b) AS ordered, min(n_ab) AS lo FROM coactivations")
    assert got.column("n")[0] == got.column("k")[0]
    assert got.column("ordered")[0].as_py() and got.column("lo")[0].as_py() >= 1


def test_each_pair_stores_n_a_and_n_b_as_the_activations_count_them(saew, lake):
    m = sparse_matrix(300, 40, 0.12, seed=5)
    m[:, 3] = -1.0        # never > 0: dead, in no pair
    put_activations(lake, "r", 0, m)
    assert saew("coactivation", "--release", "r")[0] == 0
    t = lake.query("SELECT feature_a, feature_b, n_a, n_b FROM coactivations WHERE release = 'r'")
    n_f = (m > 0).sum(axis=0)                  # the oracle: tokens with value > 0 per feature
    a, b = (np.asarray(t.column(c).to_pylist()) for c in ("feature_a", "feature_b"))
    assert a.size and 3 not in set(a) | set(b)
    assert t.column("n_a").to_pylist() == n_f[a].tolist()
    assert t.column("n_b").to_pylist() == n_f[b].tolist()
    # and as the SQL of int_feature_activity counts them
    sql = lake.query("SELECT c.feature_a, count(*) = max(c.n_a) AS same FROM activations AS x JOIN "
                     "(SELECT DISTINCT feature_a, n_a FROM coactivations) AS c ON c.feature_a = x.feature "
                     "WHERE x.value > 0 GROUP BY c.feature_a")
    assert all(sql.column("same").to_pylist())


def test_rerun_replaces_and_layer_option(saew, lake):
    m = sparse_matrix(100, 20, 0.2, seed=4)
    put_activations(lake, "r", 0, m)
    put_activations(lake, "r", 1, m[:, ::-1].copy())
    assert saew("coactivation", "--release", "r")[0] == 0
    before = lake.query("SELECT count(*) AS n FROM coactivations").column("n")[0].as_py()
    assert saew("coactivation", "--release", "r")[0] == 0
    assert saew("coactivation", "--release", "r", "--layer", "1")[0] == 0
    after = lake.query("SELECT count(*) AS n FROM coactivations").column("n")[0].as_py()
    assert before == after == 2 * len(numpy_pairs(m))


def test_no_pairs_writes_an_empty_slice(saew, lake):
    m = np.eye(5, dtype=np.float32)   # every token has one feature: no pair ever
    put_activations(lake, "r", 0, m)
    assert saew("coactivation", "--release", "r")[0] == 0
    assert stored(lake, "r", 0) == []


def _refused(saew, home, args, needle):
    files = lake_files(home)
    code, out, err = saew(*args)
    assert code == 2, (out, err)
    assert err.startswith("saew: error: ") and err.count("\n") == 1 and needle in err, err
    assert lake_files(home) == files   # nothing written, not even a runs row


BAD = [
    (("coactivation", "--release", "nope"), "no SAE ingested"),
    (("coactivation", "--release", "../x"), "release names must match"),
    (("coactivation", "--release", "bare"), "no activations"),
    (("coactivation", "--release", "r", "--layer", "9"), "--layer 9"),
    (("coactivation", "--release", "wide"), "outside the SAE's d_sae 3"),
]


def test_bad_inputs(saew, lake, home):
    from tests.factories import make_sae, put_sae

    put_activations(lake, "r", 0, KNOWN)
    put_sae(lake, "bare", 0, make_sae(d_sae=8))
    put_activations(lake, "wide", 0, KNOWN, d_sae=3)
    for args, needle in BAD:
        _refused(saew, home, args, needle)
