"""`saew match --method random --draws N`: the null model as a distribution (contract section 6).

Draw 0 is `random` exactly as before; draws i >= 1 are `random.<i>`, each a uniformly random
bijection from its own seeded stream; a re-run replaces the whole set.
"""
from __future__ import annotations

import numpy as np
import pytest

from saew.compute.matching.solver import random_bijection
from saew.compute.matching.step import null_entropy
from saew.sae.costs import pair_cosines, pair_costs
from saew.storage.names import null_draw_index, null_draw_method
from tests.factories import make_sae, put_sae
from tests.factories_match import put_embeddings

WIDTHS = (24, 24, 30, 20)


def _release(lake, widths=WIDTHS, text: bool = False):
    rng = np.random.default_rng(5)
    for layer, w in enumerate(widths):
        put_sae(lake, "r", layer, make_sae(8, w, "jumprelu", seed=layer))
        if text:
            put_embeddings(lake, "r", layer, np.arange(w), rng.standard_normal((w, 6)))


def _draws(lake, space: str = "decoder") -> dict[tuple[str, int], np.ndarray]:
    """(method, src_layer) -> dst_feature by src_feature, for the null methods of a space."""
    t = lake.query("SELECT method, src_layer, list(dst_feature ORDER BY src_feature) d FROM matches "
                   "WHERE space = ? AND method LIKE 'random%' GROUP BY ALL", [space])
    return {(m, s): np.array(d) for m, s, d in zip(*[t.column(c).to_pylist() for c in t.column_names])}


def test_draw_zero_is_what_random_stored_before_and_draws_differ(saew, lake):
    _release(lake)
    code, out, err = saew("match", "--release", "r", "--method", "random", "--seed", "4")
    assert code == 0, err
    assert "10 null draws" in out
    got = _draws(lake)
    assert {m for m, _ in got} == {null_draw_method(i) for i in range(10)}
    # draw 0, bit for bit: the seeded bijection of SeedSequence(seed, spawn_key=(src_layer,)),
    # folded cost, decoder cosine
    t = lake.query("SELECT src_layer, src_feature, dst_layer, dst_feature, cost, cosine FROM matches "
                   "WHERE method = 'random' ORDER BY src_layer, src_feature")
    for l0, (n, m) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        a, b = make_sae(8, n, "jumprelu", seed=l0), make_sae(8, m, "jumprelu", seed=l0 + 1)
        i, j = random_bijection(n, m, 4, l0)
        rows = [r for r in t.to_pylist() if r["src_layer"] == l0]
        assert [r["src_feature"] for r in rows] == list(i) and [r["dst_feature"] for r in rows] == list(j)
        assert [r["cost"] for r in rows] == list(pair_costs(a, b, i, j, "folded"))
        assert [r["cosine"] for r in rows] == list(pair_cosines(a.w_dec, b.w_dec, i, j))
        assert {r["dst_layer"] for r in rows} == {l0 + 1}
    # draws >= 1: the folded cost (one pass per pair) and the decoder cosine of their own pairs
    c = lake.query("SELECT src_layer, src_feature, dst_feature, cost, cosine FROM matches "
                   "WHERE method = 'random.3' AND src_layer = 2 ORDER BY src_feature")
    a, b = make_sae(8, 30, "jumprelu", seed=2), make_sae(8, 20, "jumprelu", seed=3)
    i, j = c.column("src_feature").to_numpy(), c.column("dst_feature").to_numpy()
    np.testing.assert_allclose(c.column("cost").to_numpy(), pair_costs(a, b, i, j, "folded"), rtol=1e-12)
    np.testing.assert_allclose(c.column("cosine").to_numpy(), pair_cosines(a.w_dec, b.w_dec, i, j), rtol=1e-12)
    # every draw a one-to-one matching of min(n, m) pairs, no two draws alike at any layer pair
    for l0, (n, m) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        perms = [got[(null_draw_method(i), l0)] for i in range(10)]
        assert all(len(p) == min(n, m) == len(set(p)) and p.max() < m for p in perms)
        assert len({p.tobytes() for p in perms}) == 10
    # draws of one number are independent across layer pairs (equal widths 24 -> 24 at 0 and 1)
    assert not np.array_equal(got[("random.1", 0)], got[("random.1", 1)][:24])
    # reproducible with --seed, another seed another set
    assert saew("match", "--release", "r", "--method", "random", "--seed", "4")[0] == 0
    again = _draws(lake)
    assert all(np.array_equal(again[k], v) for k, v in got.items())
    assert saew("match", "--release", "r", "--method", "random", "--seed", "5")[0] == 0
    other = _draws(lake)
    assert all(not np.array_equal(other[k], v) for k, v in got.items())


def test_text_space_draws_are_their_own_streams(saew, lake):
    _release(lake, widths=(16, 16), text=True)
    assert saew("match", "--release", "r", "--method", "random", "--draws", "4")[0] == 0
    code, _, err = saew("match", "--release", "r", "--space", "text", "--method", "random", "--draws", "4")
    assert code == 0, err
    dec, txt = _draws(lake, "decoder"), _draws(lake, "text")
    assert set(dec) == set(txt) == {(null_draw_method(i), 0) for i in range(4)}
    assert np.array_equal(dec[("random", 0)], txt[("random", 0)])  # draw 0: the seed as before
    assert all(not np.array_equal(dec[(f"random.{i}", 0)], txt[(f"random.{i}", 0)]) for i in (1, 2, 3))
    t = lake.query("SELECT cost, cosine FROM matches WHERE space = 'text' AND method = 'random.2'")
    np.testing.assert_allclose(t.column("cosine").to_numpy(), 1 - t.column("cost").to_numpy(), atol=1e-12)


def test_reruns_replace_the_whole_set(saew, lake):
    _release(lake)
    assert saew("match", "--release", "r", "--method", "folded")[0] == 0
    assert saew("match", "--release", "r", "--method", "random")[0] == 0
    assert len(_draws(lake)) == 10 * 3
    assert saew("match", "--release", "r", "--method", "random", "--draws", "3")[0] == 0
    left = _draws(lake)
    assert sorted({m for m, _ in left}) == ["random", "random.1", "random.2"] and len(left) == 3 * 3
    assert saew("match", "--release", "r", "--method", "random", "--draws", "5")[0] == 0
    assert len(_draws(lake)) == 5 * 3
    n = lake.query("SELECT method, count(*) n FROM matches GROUP BY ALL").to_pylist()
    assert {r["method"]: r["n"] for r in n} == {m: 24 + 24 + 20 for m in
                                              ["folded", *(null_draw_method(i) for i in range(5))]}
    # --method all stores one draw unless told, and so leaves exactly one
    assert saew("match", "--release", "r", "--method", "all")[0] == 0
    assert set(_draws(lake)) == {("random", s) for s in range(3)}
    assert saew("match", "--release", "r", "--method", "all", "--draws", "2")[0] == 0
    assert {m for m, _ in _draws(lake)} == {"random", "random.1"}


def test_draws_are_uniform_bijections():
    """Over 1,800 draws of a 3 -> 3 matching each of the 6 permutations comes up about 300 times
    (chi-square, 5 degrees of freedom, p > 0.001 means < 20.5)."""
    perms = [tuple(random_bijection(3, 3, null_entropy(0, "decoder", d), 7)[1]) for d in range(1, 1801)]
    _, counts = np.unique(np.array(perms), axis=0, return_counts=True)
    assert len(counts) == 6
    assert float(((counts - 300.0) ** 2 / 300.0).sum()) < 20.5
    assert null_entropy(9, "text", 0) == 9 and null_draw_index("random.7") == 7


@pytest.mark.parametrize("argv, needle", [
    (["--draws", "3"], "--draws 3"),
    (["--method", "folded", "--draws", "2"], "--draws 2"),
    (["--space", "text", "--method", "cosine", "--draws", "2"], "--draws 2"),
    (["--method", "random", "--draws", "0"], "--draws: 0"),
    (["--method", "random", "--draws", "-1"], "--draws: -1"),
])
def test_bad_draws(saew, lake, argv, needle):
    _release(lake, widths=(10, 10))
    code, _, err = saew("match", "--release", "r", *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not lake.has_data("matches")
