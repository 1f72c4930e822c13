"""SAE Match: the exact assignment solver against scipy, planted permutations, the CLI."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from saew.compute.matching.costs import CosineCosts, SqEuclidCosts
from saew.compute.matching.solver import SolverConfig, random_bijection, solve
from saew.compute.matching.step import match_pair
from tests.factories import make_sae, put_sae
from tests.factories_match import planted_next_layer, put_embeddings, twin_jumprelu
from saew.errors import BadInput
from saew.sae.costs import pair_cosines, pair_costs


def _scipy_opt(c: np.ndarray) -> float:
    r, j = linear_sum_assignment(c)
    return float(c[r, j].sum())


def _check(a, n: int, m: int, c: np.ndarray) -> None:
    assert len(a.rows) == min(n, m)
    assert len(np.unique(a.rows)) == len(a.rows) and len(np.unique(a.cols)) == len(a.cols)
    assert np.all(np.diff(a.rows) > 0)
    opt = _scipy_opt(c)
    assert abs(a.total - opt) <= 1e-9 * max(1.0, abs(opt))
    assert abs(c[a.rows, a.cols].sum() - a.total) <= 1e-9 * max(1.0, abs(opt))


# --------------------------------------------------------------------------- the solver
@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (40, 40), (25, 40), (40, 25), (1, 9), (9, 1)])
@pytest.mark.parametrize("kind", ["uniform", "ties", "rank_one_plus_noise"])
def test_sparse_and_exact_equal_scipy_on_random_costs(shape, kind):
    rng = np.random.default_rng(hash((shape, kind)) % 2**32)
    n, m = shape
    if kind == "uniform":
        c = rng.random((n, m))
    elif kind == "ties":  # many equal costs and duplicate rows
        c = rng.integers(0, 3, (n, m)).astype(float)
        c[n // 2:] = c[: n - n // 2]
    else:  # every row prefers the same columns: top-k candidates are useless
        c = np.add.outer(rng.random(n), 5 * rng.random(m)) + 0.1 * rng.random((n, m))
    for k in (1, 2, 5):
        _check(solve(c, "sparse", SolverConfig(k=k, chunk_rows=8)), n, m, c)
    _check(solve(c, "exact"), n, m, c)
    _check(solve(c, "auto"), n, m, c)


def test_truncation_is_wrong_so_the_certificate_must_act():
    """All rows rank the same columns first: the k=2 candidate graph has no full matching
    (expansion), and where it has one it is sub-optimal (violations found and added)."""
    rng = np.random.default_rng(3)
    c = np.add.outer(np.zeros(30), np.linspace(0, 1, 30)) + 0.3 * rng.random((30, 30))
    a = solve(c, "sparse", SolverConfig(k=2, chunk_rows=8))
    assert a.stats["expanded_rows"] > 0 or a.stats["rescreened_rows"] > 0
    _check(a, 30, 30, c)
    # a case where the top-k graph is feasible but its optimum is not the global one
    c2 = rng.random((60, 60))
    c2[np.arange(60), np.roll(np.arange(60), 1)] = 0.5  # decent, but outside everyone's top 2
    b = solve(c2, "sparse", SolverConfig(k=2, chunk_rows=16))
    assert b.stats["rounds"] >= 1
    _check(b, 60, 60, c2)


def test_sqeuclid_and_cosine_providers_match_dense_oracle():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((70, 12)).astype(np.float32)
    b = np.concatenate([a[rng.permutation(70)[:50]] + 0.3 * rng.standard_normal((50, 12)),
                        rng.standard_normal((30, 12))]).astype(np.float32)
    for costs in (SqEuclidCosts(a, b), CosineCosts(a / np.linalg.norm(a, axis=1, keepdims=True),
                                                   b / np.linalg.norm(b, axis=1, keepdims=True))):
        dense = costs.dense()
        for solver in ("sparse", "exact"):
            for cc in (costs, costs.T):
                r = solve(cc, solver, SolverConfig(k=3, chunk_rows=16))
                d = cc.dense()
                _check(r, cc.n, cc.m, d)
        i, j = np.arange(10), np.arange(10)[::-1]
        np.testing.assert_allclose(costs.exact(i, j), dense[i, j], rtol=1e-9, atol=1e-12)
    # the float32 screening block stays within the stated error bound
    sq = SqEuclidCosts(a, b)
    err = np.abs(sq.block(0, 70).numpy() - sq.dense())
    assert np.all(err <= sq.row_err[:, None] + sq.col_err[None, :])


def _random_sparse(n: int, m: int, per_row: int, seed: int):
    """A random CSR graph holding a full matching (row i -> column perm[i]), with duplicate
    edges and some single-edge rows; returns (indptr, indices, cost, dense cost with inf)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(m)[:n]
    rows, cols = [], []
    for i in range(n):
        extra = rng.integers(0, m, 0 if i % 7 == 0 else int(rng.integers(1, per_row)))
        cs = np.concatenate([[perm[i]], extra, extra[:1]])  # a duplicate edge
        rows.append(np.full(len(cs), i))
        cols.append(cs)
    r, c = np.concatenate(rows), np.concatenate(cols)
    w = rng.integers(0, 20, len(r)).astype(float)  # ties
    dense = np.full((n, m), np.inf)
    np.minimum.at(dense, (r, c), w)
    keep = w == dense[r, c]
    r, c, w = r[keep], c[keep], w[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    return indptr, c.astype(np.int64), w, dense


@pytest.mark.parametrize("start", ["cold", "jv", "warm"])
@pytest.mark.parametrize("seed", range(6))
def test_sparse_sap_starts_reach_the_optimum_with_certifying_duals(start, seed):
    from saew.compute.matching.lap_sparse import sparse_sap

    n = m = 60
    indptr, indices, w, dense = _random_sparse(n, m, 6, seed)
    big = np.where(np.isinf(dense), 1e6, dense)
    opt = _scipy_opt(big)
    v0 = c0 = None
    if start == "warm":  # from the solution of a perturbed problem
        rng = np.random.default_rng(seed + 100)
        c0, _, v0, st, _ = sparse_sap(indptr, indices, w + rng.random(len(w)), m, "jv")
        assert st == 0
    col4row, u, v, status, _ = sparse_sap(indptr, indices, w, m, start, v0, c0)
    assert status == 0 and len(np.unique(col4row)) == n
    assert dense[np.arange(n), col4row].sum() == opt
    rows = np.repeat(np.arange(n), np.diff(indptr))
    red = w - u[rows] - v[indices]
    assert red.min() >= -1e-9  # dual feasible on every edge
    assert np.abs(dense[np.arange(n), col4row] - u - v[col4row]).max() <= 1e-9  # tight


def test_sparse_sap_reports_rows_without_augmenting_path():
    from saew.compute.matching.lap_sparse import sparse_sap

    indptr = np.array([0, 1, 2, 3])
    indices = np.array([0, 0, 1])  # rows 0 and 1 both only reach column 0
    col4row, _, _, status, tree = sparse_sap(indptr, indices, np.ones(3), 3, "jv")
    assert status == 1 and tree[:2].any() and not tree[2]
    with pytest.raises(ValueError, match="square"):
        sparse_sap(indptr, indices, np.ones(3), 4, "jv")


@pytest.mark.parametrize("prefix_max", [0.0, 1.0])
def test_certificate_checks_failing_rows_by_open_columns_or_whole_rows(prefix_max):
    """Clustered vectors: some rows fail the bound test and are checked either on the columns
    their bound leaves open (prefix_max = 1) or recomputed whole (prefix_max = 0)."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((6, 10))
    a = (centres[rng.integers(0, 6, 240)] + 0.3 * rng.standard_normal((240, 10))).astype(np.float32)
    b = (centres[rng.integers(0, 6, 240)] + 0.3 * rng.standard_normal((240, 10))).astype(np.float32)
    costs = SqEuclidCosts(a, b)
    r = solve(costs, "sparse", SolverConfig(k=4, chunk_rows=32, prefix_max=prefix_max))
    _check(r, 240, 240, costs.dense())
    key = "prefix_rows" if prefix_max else "rescreened_rows"
    assert r.stats[key] > 0
    assert r.stats["edges"] < 240 * 4  # float64 costs only for the near-tight candidates


def test_identical_features_on_both_sides_tie_everywhere():
    """40 identical rows and 40 identical columns (dead features): they all rank the same
    tied candidates first, so the k = 4 candidate graph has no full matching until the
    widening takes in every tied column."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((160, 8)).astype(np.float32)
    b = (a[rng.permutation(160)] + 0.2 * rng.standard_normal((160, 8))).astype(np.float32)
    a[:40] = a[0]
    b[:40] = b[0]
    costs = SqEuclidCosts(a, b)
    r = solve(costs, "sparse", SolverConfig(k=4, chunk_rows=32))
    assert r.stats["expanded_rows"] > 0
    _check(r, 160, 160, costs.dense())


def test_cosine_costs_of_raw_vectors_with_zero_rows():
    rng = np.random.default_rng(2)
    a = (rng.standard_normal((50, 9)) * rng.random((50, 1)) * 4).astype(np.float32)
    b = (rng.standard_normal((40, 9)) * 3).astype(np.float32)
    a[3] = 0
    b[5] = 0
    costs = CosineCosts(a, b)
    ii, jj = [x.ravel() for x in np.meshgrid(np.arange(50), np.arange(40), indexing="ij")]
    dense = costs.dense()
    np.testing.assert_allclose(dense.ravel(), 1 - pair_cosines(a, b, ii, jj), atol=1e-12)
    assert dense[3].tolist() == [1.0] * 40 and dense[:, 5].tolist() == [1.0] * 50
    assert np.all(np.abs(costs.block(0, 50).numpy() - dense)
                  <= costs.row_err[:, None] + costs.col_err[None, :])
    np.testing.assert_allclose(costs.T.dense(), dense.T, atol=1e-15)
    for cc in (costs, costs.T):
        _check(solve(cc, "sparse", SolverConfig(k=2, chunk_rows=8)), cc.n, cc.m, cc.dense())


@pytest.mark.parametrize("kind", ["sqeuclid", "cosine"])
def test_bfloat16_screen_stays_within_its_bound_and_exact(kind):
    """The bfloat16 screening pass is coarse (bound ~1% of the costs) but rigorous: the
    certificate then does more work, and the optimum is still exactly scipy's."""
    from saew.compute.matching.costs import resolve_screen

    rng = np.random.default_rng(4)
    a = (rng.standard_normal((300, 200)) * rng.random((300, 1)) * 3).astype(np.float32)
    b = (a[rng.permutation(300)] + 0.1 * rng.standard_normal((300, 200))).astype(np.float32)
    a[7] = 0
    make = SqEuclidCosts if kind == "sqeuclid" else CosineCosts
    costs = make(a, b, screen="bfloat16")
    assert costs.screen == "bfloat16" and make(a, b, screen="float32").screen == "float32"
    dense = costs.dense()
    blk, off = costs.screen_block(0, 300)
    err = np.abs(blk.double().numpy() + (0 if off is None else off[:, None]) - dense)
    bound = costs.screen_row_err[:, None] + costs.screen_col_err[None, :]
    assert np.all(err <= bound) and err.max() > 10 * (costs.row_err.max() + costs.col_err.max())
    for cc in (costs, costs.T):
        _check(solve(cc, "sparse", SolverConfig(k=8, chunk_rows=64)), cc.n, cc.m, cc.dense())
    assert resolve_screen("float32") == "float32"
    assert resolve_screen("auto") in ("float32", "bfloat16")
    with pytest.raises(BadInput, match="--screen"):
        resolve_screen("int8")


def test_cli_screens_agree(saew, lake):
    _release(lake, widths=(40, 40, 30))
    totals = []
    for screen in ("float32", "bfloat16"):
        code, _, err = saew("match", "--release", "r", "--solver", "sparse", "--screen", screen)
        assert code == 0, err
        totals.append(lake.query("SELECT sum(cost) s FROM matches WHERE method = 'folded'")
                      .column("s")[0].as_py())
    assert abs(totals[0] - totals[1]) <= 1e-9 * totals[0]


def test_row_sqnorms_accumulate_in_float64():
    from saew.compute.matching.pair_kernels import row_sqnorms

    a = np.random.default_rng(0).standard_normal((100, 1537)).astype(np.float32)
    np.testing.assert_allclose(row_sqnorms(a), (a.astype(np.float64) ** 2).sum(1), rtol=1e-13)
    assert row_sqnorms(np.zeros((0, 4), np.float32)).shape == (0,)


def test_random_bijection_is_seeded_and_one_to_one():
    r1, c1 = random_bijection(30, 40, 0, 3)
    r2, c2 = random_bijection(30, 40, 0, 3)
    r3, c3 = random_bijection(30, 40, 1, 3)
    r4, c4 = random_bijection(30, 40, 0, 4)
    assert np.array_equal(c1, c2) and not np.array_equal(c1, c3) and not np.array_equal(c1, c4)
    assert not np.array_equal(c1, np.random.default_rng(0).permutation(40)[:30])
    assert len(np.unique(c1)) == 30 and c1.max() < 40
    r, c = random_bijection(40, 30, 5)
    assert len(r) == 30 and len(np.unique(r)) == 30 and sorted(c) == list(range(30))


# --------------------------------------------------------------------------- SAE Match
def test_planted_permutation_folding_matters():
    """Layer l+1 = a permuted copy of a twin-feature JumpReLU SAE with per-feature threshold
    rescaling (folded parameters preserved): folded recovers the permutation exactly, unfolded
    and cosine cannot (twins share decoder directions; raw scales changed)."""
    acc = {m: [] for m in ("folded", "folded-decoder", "unfolded", "cosine")}
    for seed in range(3):
        p = twin_jumprelu(seed=seed)
        perm = np.random.default_rng(seed + 10).permutation(p.d_sae)
        q = planted_next_layer(p, perm, seed=seed + 1, noise=0.05)
        for m in acc:
            r = match_pair(p, q, m, "sparse")
            assert np.array_equal(r.src_feature, np.arange(p.d_sae))
            acc[m].append(float((r.dst_feature == perm).mean()))
            ex = match_pair(p, q, m, "exact")
            assert abs(ex.total - r.total) <= 1e-9 * max(1.0, abs(r.total))
    assert min(acc["folded"]) == 1.0 and min(acc["folded-decoder"]) == 1.0
    assert np.mean(acc["unfolded"]) < 0.9 and np.mean(acc["cosine"]) < 0.9


def test_costs_and_cosines_are_the_methods(tmp_path):
    a = make_sae(8, 20, "jumprelu", seed=1)
    b = make_sae(8, 26, "jumprelu", seed=2, threshold_scale=3.0)
    for method in ("folded", "folded-decoder", "unfolded", "cosine"):
        r = match_pair(a, b, method)
        np.testing.assert_allclose(r.cost, pair_costs(a, b, r.src_feature, r.dst_feature, method))
        np.testing.assert_allclose(r.cosine, pair_cosines(a.w_dec, b.w_dec, r.src_feature, r.dst_feature))
        # exact optimum of the method's cost (unequal widths: 20 pairs)
        if method == "cosine":
            dense = 1 - pair_cosines(a.w_dec, b.w_dec, *[x.ravel() for x in np.meshgrid(
                np.arange(20), np.arange(26), indexing="ij")]).reshape(20, 26)
        else:
            ii, jj = [x.ravel() for x in np.meshgrid(np.arange(20), np.arange(26), indexing="ij")]
            dense = pair_costs(a, b, ii, jj, method).reshape(20, 26)
        assert len(r.src_feature) == 20
        opt = _scipy_opt(dense)
        assert abs(r.total - opt) <= 1e-6 * abs(opt)
    rnd = match_pair(a, b, "random", seed=0, stream=0)
    np.testing.assert_allclose(rnd.cost, pair_costs(a, b, rnd.src_feature, rnd.dst_feature, "folded"))


# --------------------------------------------------------------------------- the command
def _release(lake, widths=(24, 24, 30), seed=0):
    for layer, w in enumerate(widths):
        put_sae(lake, "r", layer, make_sae(8, w, "jumprelu", seed=seed + layer))


def test_cli_match_writes_every_adjacent_pair_and_reruns_replace(saew, lake):
    _release(lake, widths=(24, 24, 30, 20))
    code, out, err = saew("match", "--release", "r", "--method", "all")
    assert code == 0, err
    t = lake.query("SELECT method, src_layer, count(*) n, count(DISTINCT dst_feature) nd, "
                   "min(dst_layer - src_layer) dl FROM matches GROUP BY ALL ORDER BY ALL")
    got = {(m, s): (n, nd, dl) for m, s, n, nd, dl in zip(*[t.column(c).to_pylist() for c in t.column_names])}
    assert len(got) == 5 * 3
    for m in ("folded", "folded-decoder", "unfolded", "cosine", "random"):
        assert got[(m, 0)] == (24, 24, 1) and got[(m, 1)] == (24, 24, 1) and got[(m, 2)] == (20, 20, 1)
    code, _, err = saew("match", "--release", "r", "--solver", "exact")
    assert code == 0, err
    assert lake.query("SELECT count(*) n FROM matches").column("n")[0].as_py() == 5 * (24 + 24 + 20)
    # exact and sparse agree; costs are the folded cost; random is seeded
    ex = lake.query("SELECT sum(cost) s FROM matches WHERE method = 'folded'").column("s")[0].as_py()
    assert saew("match", "--release", "r", "--solver", "sparse")[0] == 0
    sp = lake.query("SELECT sum(cost) s FROM matches WHERE method = 'folded'").column("s")[0].as_py()
    assert abs(ex - sp) <= 1e-9 * ex
    r1 = lake.query("SELECT dst_feature FROM matches WHERE method = 'random' ORDER BY src_layer, src_feature")
    assert saew("match", "--release", "r", "--method", "random")[0] == 0
    r2 = lake.query("SELECT dst_feature FROM matches WHERE method = 'random' ORDER BY src_layer, src_feature")
    assert r1.equals(r2)
    assert saew("match", "--release", "r", "--method", "random", "--seed", "7")[0] == 0
    r3 = lake.query("SELECT dst_feature FROM matches WHERE method = 'random' ORDER BY src_layer, src_feature")
    assert not r1.equals(r3)


def test_cli_text_space_leaves_out_features_without_embeddings(saew, lake):
    _release(lake, widths=(12, 16))
    rng = np.random.default_rng(0)
    f0, f1 = np.array([0, 2, 3, 5, 7, 8, 11]), np.array([1, 2, 4, 6, 9, 10, 12, 13, 15])
    e0, e1 = rng.standard_normal((7, 5)), rng.standard_normal((9, 5))
    put_embeddings(lake, "r", 0, f0, e0)
    put_embeddings(lake, "r", 1, f1, e1)
    code, out, err = saew("match", "--release", "r", "--space", "text")
    assert code == 0, err
    t = lake.query("SELECT src_feature, dst_feature, cost, cosine FROM matches WHERE space = 'text' "
                   "AND method = 'cosine' ORDER BY src_feature")
    s, d = np.array(t.column("src_feature").to_pylist()), np.array(t.column("dst_feature").to_pylist())
    assert list(s) == list(f0) and set(d) <= set(f1) and len(set(d)) == 7
    u0 = e0 / np.linalg.norm(e0, axis=1, keepdims=True)
    u1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    dense = 1 - u0 @ u1.T
    cost = np.array(t.column("cost").to_pylist())
    assert abs(cost.sum() - _scipy_opt(dense)) < 1e-6
    np.testing.assert_allclose(np.array(t.column("cosine").to_pylist()), 1 - cost, atol=1e-12)
    assert saew("match", "--release", "r", "--space", "text", "--method", "random")[0] == 0
    assert saew("match", "--release", "r", "--space", "text", "--embedder", "test-embedder")[0] == 0


def _nothing_written(lake) -> bool:
    return not lake.has_data("matches") and not lake.has_data("runs")


@pytest.mark.parametrize("argv, needle", [
    (["--release", "r", "--method", "bogus"], "--method"),
    (["--release", "r", "--solver", "fast"], "--solver"),
    (["--release", "r", "--screen", "float16"], "--screen"),
    (["--release", "r", "--space", "audio"], "--space"),
    (["--release", "r", "--space", "text", "--method", "folded"], "--method"),
    (["--release", "r", "--space", "text"], "embeddings"),
    (["--release", "nope"], "nope"),
    (["--release", "../x"], "--release"),
    (["--release", "r", "--candidates", "0"], "--candidates"),
])
def test_cli_bad_arguments(saew, lake, argv, needle):
    _release(lake, widths=(10, 10))
    code, out, err = saew("match", *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert _nothing_written(lake)


def test_cli_release_with_one_layer(saew, lake):
    put_sae(lake, "r", 3, make_sae(8, 10))
    code, _, err = saew("match", "--release", "r")
    assert code == 2 and "only layer 3" in err and len(err.strip().splitlines()) == 1
    assert _nothing_written(lake)


def test_cli_mismatched_d_in(saew, lake):
    """write_sae refuses a d_in change inside a release, so plant one through another release."""
    put_sae(lake, "r", 0, make_sae(8, 10))
    put_sae(lake, "other", 1, make_sae(6, 10))
    for table in ("saes", "features"):   # the other release's layer-1 rows, as release r's
        rows = lake.query(f"select * exclude (release, layer) from {table} where release = 'other'")
        lake.write(table, rows, release="r", layer=1)
    code, _, err = saew("match", "--release", "r")
    assert code == 2 and "d_in" in err and len(err.strip().splitlines()) == 1
    assert _nothing_written(lake)


def test_cli_exact_refuses_huge_dense_matrix():
    from saew.errors import BadInput

    big = SqEuclidCosts(np.zeros((40000, 2), np.float32), np.zeros((40000, 2), np.float32))
    with pytest.raises(BadInput, match="--solver exact"):
        solve(big, "exact")
