"""`saew correlate`: n_src, n_dst, n_both and Pearson between adjacent layers against numpy."""
from __future__ import annotations

import math

import numpy as np

from tests.factories_coact import lake_files, put_activations, sparse_matrix


def oracle(x: np.ndarray, y: np.ndarray, k: int = 16) -> list[tuple]:
    """np.corrcoef over all N tokens (0 where inactive), top k by pearson per source feature
    among pairs with n_both >= 1, ties by dst ascending, NaN last."""
    x = np.where(x > 0, x, 0).astype(np.float64)
    y = np.where(y > 0, y, 0).astype(np.float64)
    bx, by = (x > 0).astype(np.int64), (y > 0).astype(np.int64)
    both = bx.T @ by
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(x.T, y.T)[: x.shape[1], x.shape[1]:]
    rows = []
    for i in range(x.shape[1]):
        js = [j for j in np.flatnonzero(both[i]).tolist()]
        js.sort(key=lambda j: (math.isnan(r[i, j]), -r[i, j] if not math.isnan(r[i, j]) else 0, j))
        rows += [(i, j, int(bx[:, i].sum()), int(by[:, j].sum()), int(both[i, j]), r[i, j]) for j in js[:k]]
    return rows


def stored(lake, release: str, src_layer: int) -> list[tuple]:
    t = lake.query("SELECT src_feature, dst_feature, n_src, n_dst, n_both, pearson FROM correlations "
                   "WHERE release = ? AND src_layer = ? ORDER BY src_feature, pearson DESC NULLS LAST, "
                   "dst_feature", [release, src_layer])
    return list(zip(*(t.column(c).to_pylist() for c in t.column_names)))


def same(got: list[tuple], want: list[tuple]) -> None:
    assert [g[:5] for g in got] == [w[:5] for w in want]
    for g, w in zip(got, want):
        assert (g[5] is None and math.isnan(w[5])) or abs(g[5] - w[5]) < 1e-9, (g, w)


def test_hand_computed_pair(saew, lake):
    # N = 4 tokens; token 3 has nothing active in either layer (it only counts in N)
    x = np.array([[1.0], [2.0], [0.0], [0.0]], np.float32)
    y = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], np.float32)
    put_activations(lake, "r", 0, x[:3], n_tokens=4)
    put_activations(lake, "r", 1, y[:3], n_tokens=4)
    code, out, err = saew("correlate", "--release", "r")
    assert code == 0, err
    # by hand, x = (1,2,0,0), y0 = (2,0,1,0): sx=3 sxx=5 sy=3 syy=5 sxy=2, N=4
    # r = (4*2 - 9) / sqrt((20-9)(20-9)) = -1/11; y1 = (0,1,0,0): sxy=2, sy=1, syy=1
    # r = (8 - 3) / sqrt(11 * 3)
    got = stored(lake, "r", 0)
    assert [g[:5] for g in got] == [(0, 1, 2, 1, 1), (0, 0, 2, 2, 1)]
    assert abs(got[0][5] - 5 / math.sqrt(33)) < 1e-12 and abs(got[1][5] + 1 / 11) < 1e-12
    same(got, oracle(x, y))
    dst = lake.query("SELECT DISTINCT dst_layer FROM correlations").column("dst_layer").to_pylist()
    assert dst == [1]


def test_random_layers_against_numpy(saew, lake):
    n = 260
    x = sparse_matrix(n, 30, 0.15, seed=1)
    y = sparse_matrix(n, 45, 0.15, seed=2)
    z = sparse_matrix(n, 20, 0.3, seed=3)
    x[:, 4] = 0                      # dead source feature: no rows
    y[:, 10] = 1.5 * x[:, 2]         # pass-through: pearson 1
    x[100:120] = y[100:120] = 0      # tokens where nothing fires
    x[5, :] = -1.0                   # negative values are inactive (0)
    ids = np.arange(n) * 7 + 3       # shared, non-contiguous token ids
    put_activations(lake, "r", 2, x, token_ids=ids)
    put_activations(lake, "r", 5, y, token_ids=ids)
    put_activations(lake, "r", 6, z, token_ids=ids)
    code, out, err = saew("correlate", "--release", "r")
    assert code == 0, err
    same(stored(lake, "r", 2), oracle(x, y))
    same(stored(lake, "r", 5), oracle(y, z))
    top = stored(lake, "r", 2)
    assert (2, 10) in {(g[0], g[1]) for g in top if g[5] is not None and g[5] > 1 - 1e-9}
    assert not [g for g in top if g[0] == 4]
    # a re-run replaces its slices
    n_rows = lake.query("SELECT count(*) AS c FROM correlations").column("c")[0].as_py()
    assert saew("correlate", "--release", "r")[0] == 0
    assert lake.query("SELECT count(*) AS c FROM correlations").column("c")[0].as_py() == n_rows


def test_top16_ties_and_undefined_pearson(saew, lake):
    n = 40
    x = np.zeros((n, 3), np.float32)
    x[:10, 0] = np.arange(1, 11)
    x[:, 1] = 2.0                    # active on every token with one value: variance 0 -> NULL
    y = np.zeros((n, 24), np.float32)
    order = np.random.default_rng(0).permutation(20)
    y[:10, order] = np.arange(1, 11)[:, None] * 0.5   # 20 identical copies of x0: 20 ties at r = 1
    y[:12, 22] = 1.0
    put_activations(lake, "r", 0, x)
    put_activations(lake, "r", 1, y)
    assert saew("correlate", "--release", "r")[0] == 0
    got = stored(lake, "r", 0)
    f0 = [g for g in got if g[0] == 0]
    assert len(f0) == 16 and [g[1] for g in f0] == list(range(16))   # ties: dst ascending
    assert all(abs(g[5] - 1.0) < 1e-12 for g in f0)
    f1 = [g for g in got if g[0] == 1]
    assert len(f1) == 16 and all(g[5] is None for g in f1) and [g[1] for g in f1] == list(range(16))
    same(got, oracle(x, y))


def _refused(saew, home, args, needle):
    files = lake_files(home)
    code, out, err = saew(*args)
    assert code == 2, (out, err)
    assert err.startswith("saew: error: ") and err.count("\n") == 1 and needle in err, err
    assert lake_files(home) == files


def test_bad_inputs(saew, lake, home):
    m = sparse_matrix(20, 6, 0.3, seed=5)
    put_activations(lake, "one", 0, m)                       # a single layer
    put_activations(lake, "diffn", 0, m)
    put_activations(lake, "diffn", 1, m, n_tokens=25)        # N differs between layers
    put_activations(lake, "non", 0, m)
    put_activations(lake, "non", 1, m, n_tokens=-1)          # no activation_sets row
    put_activations(lake, "few", 0, m, n_tokens=10)          # 20 tokens seen, N = 10
    put_activations(lake, "few", 1, m, n_tokens=10)
    for args, needle in [
        (("correlate", "--release", "nope"), "no SAE ingested"),
        (("correlate", "--release", "one"), "no two adjacent layers"),
        (("correlate", "--release", "diffn"), "n_tokens differ"),
        (("correlate", "--release", "non"), "no activation_sets row"),
        (("correlate", "--release", "few"), "activations cover 17 tokens but activation_sets says n_tokens = 10"),
    ]:
        _refused(saew, home, args, needle)
