"""Activation examples (lake table ``examples``) against brute-force oracles: the streaming
selection (top-K set and order, quantile samples) and a real harvest's windows and acts."""
from __future__ import annotations

import numpy as np
import pytest

from saew.compute.activations.examples import QUANTILES, ExampleSelector
from saew.compute.activations.harvest import HarvestConfig, harvest
from saew.compute.lm.load import load_model_from_tl
from saew.storage.context import Context
from tests.factories import make_sae, put_sae
from tests.factories_harvest import tiny_tl_model, write_txt


def _oracle(tid, feat, val, k: int) -> dict[tuple[int, str, int], tuple[int, float]]:
    """Per feature: top k by value desc then token asc; quantile j at sorted-ascending index
    floor((j + 1/2) m / Q), duplicates dropped, ranks renumbered 0.."""
    out = {}
    for f in sorted(set(feat.tolist())):
        rows = sorted(((float(v), int(t)) for t, ff, v in zip(tid, feat, val) if ff == f),
                      key=lambda r: (-r[0], r[1]))
        for r, (v, t) in enumerate(rows[:k]):
            out[(f, "top", r)] = (t, v)
        asc = sorted(rows, key=lambda r: (r[0], r[1]))
        m = len(asc)
        idx = sorted({int((j + 0.5) * m // QUANTILES) for j in range(QUANTILES)})
        for r, i in enumerate(idx):
            out[(f, "quantile", r)] = (asc[i][1], asc[i][0])
    return out


def _selected(sel: ExampleSelector) -> dict:
    f, kind, rank, t, v = sel.selected()
    return {(int(a), str(b), int(c)): (int(d), float(e)) for a, b, c, d, e in zip(f, kind, rank, t, v)}


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_selection_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_tok, d_sae, k = 300, 40, 4
    dense = np.where(rng.random((n_tok, d_sae)) < 0.2, rng.integers(1, 30, (n_tok, d_sae)) / 4, 0)
    dense[:, 7] = 0  # a dead feature
    dense[5, 7] = 2.0  # ... that fired once
    tid, feat = np.nonzero(dense)
    val = dense[tid, feat].astype(np.float32)  # many ties: the token id breaks them
    sel = ExampleSelector(d_sae, k, reservoir=n_tok)  # quantiles exact: every value kept
    sel.min_buffer = 1  # merge at every batch, so the cuts tighten between batches
    cuts = np.sort(rng.choice(np.arange(1, n_tok), 6, replace=False))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n_tok]):
        m = (tid >= lo) & (tid < hi)
        sel.update(tid[m].astype(np.int64), feat[m].astype(np.int32), val[m])
    got, want = _selected(sel), _oracle(tid, feat, val, k)
    assert got == want
    assert got[(7, "top", 0)] == (5, 2.0) and (7, "top", 1) not in got
    # batching does not change the result (one batch, and a reversed stream)
    one = ExampleSelector(d_sae, k, reservoir=n_tok)
    one.update(tid[::-1].astype(np.int64), feat[::-1].astype(np.int32), val[::-1])
    assert _selected(one) == want


def test_reservoir_bounds_memory_and_spans_the_range():
    rng = np.random.default_rng(3)
    n = 20_000
    tid = np.arange(n, dtype=np.int64)
    feat = np.zeros(n, np.int32)
    val = rng.random(n).astype(np.float32)
    sel = ExampleSelector(1, 5, reservoir=256)
    sel.min_buffer = 2000
    for lo in range(0, n, 1000):
        sel.update(tid[lo:lo + 1000], feat[lo:lo + 1000], val[lo:lo + 1000])
    assert len(sel.res.value) == 256 and len(sel.top.value) == 5
    f, kind, rank, t, v = sel.selected()
    q = v[kind == "quantile"]
    np.testing.assert_allclose(q, (np.arange(QUANTILES) + 0.5) / QUANTILES, atol=0.12)
    np.testing.assert_array_equal(v[kind == "top"], np.sort(val)[::-1][:5])


def test_harvest_writes_examples_with_windows(lake, tmp_path):
    tl = tiny_tl_model(n_layers=2, d_model=32)
    m = load_model_from_tl(tl, "tiny")
    p = make_sae(32, 24, "relu", seed=5)
    put_sae(lake, "ex", 1, p)
    corpus = write_txt(tmp_path / "c.txt")
    k = 3
    with lake.transaction():
        harvest(Context(lake, "run-ex"), HarvestConfig("ex", "tiny", str(corpus), 60, 2, 12, k), model=m)
    acts = lake.query("SELECT token_id, feature, value FROM activations").to_pydict()
    tid, feat, val = (np.asarray(acts[c]) for c in ("token_id", "feature", "value"))
    toks = lake.query("SELECT token_id, doc, pos, token FROM tokens ORDER BY token_id").to_pydict()
    ex = lake.query("SELECT * FROM examples ORDER BY feature, kind, rank").to_pylist()
    assert ex and {r["release"] for r in ex} == {"ex"} and {r["layer"] for r in ex} == {1}
    got = {(r["feature"], r["kind"], r["rank"]): (r["token_id"], r["value"]) for r in ex}
    want = _oracle(tid, feat, val, k)
    assert got.keys() == want.keys()
    for key, (t, v) in want.items():
        assert got[key][0] == t and got[key][1] == pytest.approx(v)
    dense = {(int(a), int(b)): float(c) for a, b, c in zip(tid, feat, val)}
    where = {t: i for i, t in enumerate(toks["token_id"])}
    for r in ex:
        i = where[r["token_id"]]
        d, p0 = toks["doc"][i], toks["pos"][i]
        window = [j for j in range(len(toks["token_id"]))
                  if toks["doc"][j] == d and -8 <= toks["pos"][j] - p0 <= 3]
        assert r["tokens"] == [toks["token"][j] for j in window]
        assert r["peak"] == [toks["pos"][j] for j in window].index(p0)
        np.testing.assert_allclose(r["acts"], [dense.get((toks["token_id"][j], r["feature"]), 0.0)
                                               for j in window], rtol=1e-6)
        assert r["acts"][r["peak"]] == pytest.approx(r["value"])
    assert any(len(r["tokens"]) < 12 for r in ex) and any(len(r["tokens"]) == 12 for r in ex)


def test_examples_zero_and_negative(lake, tmp_path):
    from saew.errors import BadInput

    tl = tiny_tl_model(n_layers=2, d_model=32)
    m = load_model_from_tl(tl, "tiny")
    put_sae(lake, "z", 0, make_sae(32, 8, "relu", seed=1))
    corpus = write_txt(tmp_path / "c.txt")
    with pytest.raises(BadInput, match="--examples -1"):
        with lake.transaction():
            harvest(Context(lake, "r0"), HarvestConfig("z", "tiny", str(corpus), 20, 2, 12, -1), model=m)
    assert not lake.has_data("tokens")
    with lake.transaction():
        harvest(Context(lake, "r1"), HarvestConfig("z", "tiny", str(corpus), 20, 2, 12, 0), model=m)
    assert lake.query("SELECT count(*) AS n FROM examples").column("n")[0].as_py() == 0
