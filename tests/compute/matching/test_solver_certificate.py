"""The sparse solver's certificate and pair kernels, each against a brute-force oracle."""
from __future__ import annotations

import numpy as np
import pytest

from saew.compute.matching.certificate import check_prefix, uncertified_rows
from saew.compute.matching.costs import DenseCosts, SqEuclidCosts
from saew.compute.matching.pair_kernels import pair_dot, pair_sqdist


@pytest.mark.parametrize("seed", range(5))
def test_uncertified_rows_equal_the_pairwise_bound_test(seed):
    """Row i fails iff some column j is proven by neither bound:
    t_i - t_err_i - u_i >= v_j + col_err_j - tol  (row)  or  s_j - v_j - col_err_j >= u_i + row_err_i - tol  (column);
    its violators can only stand in the first ``width_i`` columns by descending v_j + col_err_j."""
    rng = np.random.default_rng(seed)
    n, m, tol = 40, 60, 1e-3
    t, s = rng.random(n), rng.random(m)
    u, v = rng.normal(0, 0.3, n), rng.normal(0, 0.3, m)
    t_err, row_err, col_err = (0.01 * rng.random(k) for k in (n, n, m))
    row_ok = (t - t_err - u)[:, None] >= (v + col_err)[None, :] - tol
    col_ok = (s - v - col_err)[None, :] >= (u + row_err)[:, None] - tol
    open_ = ~row_ok & ~col_ok
    want = np.flatnonzero(open_.any(1))
    assert 0 < len(want) < n  # the draw exercises both outcomes
    np.testing.assert_array_equal(uncertified_rows(t, s, u, v, t_err, row_err, col_err, tol), want)
    bad, order, width = uncertified_rows(t, s, u, v, t_err, row_err, col_err, tol, widths=True)
    np.testing.assert_array_equal(bad, want)
    for i, w in zip(bad, width):
        assert set(np.flatnonzero(open_[i])) <= set(order[:w].tolist())
        assert not row_ok[i, order[:w]].any()  # the prefix holds only columns the row bound leaves open


def test_check_prefix_returns_every_violator_of_its_rows():
    """On the open columns of failing rows, every pair with c_ij - u_i - v_j < -tol comes back."""
    rng = np.random.default_rng(3)
    c = rng.random((30, 50))
    costs = DenseCosts(c)
    u, v, tol = rng.normal(0.2, 0.1, 30), rng.normal(0.0, 0.1, 50), 1e-9
    rows = np.arange(0, 30, 3)
    order = np.argsort(-(v + costs.col_err), kind="stable")
    width = np.full(len(rows), 50)
    bi, bj = check_prefix(costs, rows, order, width, u, v, tol, chunk_rows=4)
    got = set(zip(bi.tolist(), bj.tolist()))
    red = c - u[:, None] - v[None, :]
    violators = {(int(i), int(j)) for i in rows for j in np.flatnonzero(red[i] < -tol)}
    assert violators and violators <= got
    assert all(red[i, j] <= tol for i, j in got)  # nothing far from tight


def test_pair_kernels_against_float64_numpy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20, 33)).astype(np.float32)
    b = rng.standard_normal((15, 33)).astype(np.float32)
    i, j = rng.integers(0, 20, 50), rng.integers(0, 15, 50)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    np.testing.assert_allclose(pair_sqdist(a, b, i, j), ((a64[i] - b64[j]) ** 2).sum(1), rtol=1e-12)
    np.testing.assert_allclose(pair_dot(a, b, i, j), (a64[i] * b64[j]).sum(1), rtol=1e-12, atol=1e-12)
    assert pair_sqdist(a, b, i[:0], j[:0]).shape == (0,) and pair_dot(a, b, i[:0], j[:0]).shape == (0,)
    np.testing.assert_allclose(SqEuclidCosts(a, b).exact(i, j), pair_sqdist(a, b, i, j))
