"""``saew flow``: blocked top-k against a dense float64 oracle, planted predecessors recovered
exactly through the lake and the dbt marts, and bad inputs refused with one line."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from saew.compute.flow.links import top_predecessors
from tests.factories import make_sae, put_sae

D = 256          # wide enough that random directions stay far below the origin threshold
N = {"r0": 40, "r1": 36, "r2": 30, "mlp": 24, "attn": 28}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_topk(dst: np.ndarray, src: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: every cosine in float64 (0 for a zero row), sorted (no ties in random data)."""
    def norm(x):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1.0)

    c = norm(dst.astype(np.float64)) @ norm(src.astype(np.float64)).T
    idx = np.argsort(-c, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(c, idx, axis=1)


@pytest.mark.parametrize("block_bytes", [4 * 7 * 50, 1 << 20])   # 7 rows per block, or one block
def test_blocked_topk_equals_the_dense_oracle(block_bytes):
    rng = np.random.default_rng(3)
    dst = rng.standard_normal((61, 16)) * rng.uniform(0.1, 3, (61, 1))   # norms must not matter
    src = rng.standard_normal((50, 16))
    src[7] = 0.0                                                            # a zero row: cosine 0
    idx, cos = top_predecessors(dst, src, 5, block_bytes=block_bytes)
    want_i, want_c = dense_topk(dst, src, 5)
    assert idx.shape == (61, 5) and idx.dtype == np.int32
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_allclose(cos, want_c, atol=1e-5)
    i2, c2 = top_predecessors(dst, src[:3], 5)            # k above the source width: all of them
    assert i2.shape == (61, 3) and (np.sort(i2, axis=1) == [0, 1, 2]).all()


def planted_release(lake, release: str = "p"):
    """Residual layers 0, 1, 2 and module SAEs at layers 1, 2 (attn_out missing at 2). Each
    feature of layers 1 and 2 copies (plus noise: cosine about 0.99) one planted predecessor: a residual feature
    of the layer before, an MLP-out or an attention-out feature of its layer; every 5th copies
    nothing (a fresh random direction: "nowhere"). Returns {(layer, feature): (module, source)}."""
    rng = np.random.default_rng(0)
    dec = {("resid", 0): unit(rng.standard_normal((N["r0"], D)))}
    truth = {}
    for L, n, mods in ((1, N["r1"], ("resid", "mlp_out", "attn_out")), (2, N["r2"], ("resid", "mlp_out"))):
        dec[("mlp_out", L)] = unit(rng.standard_normal((N["mlp"], D)))
        if "attn_out" in mods:
            dec[("attn_out", L)] = unit(rng.standard_normal((N["attn"], D)))
        rows = []
        for j in range(n):
            if j % 5 == 4:
                rows.append(rng.standard_normal(D))
                truth[(L, j)] = ("nowhere", None)
                continue
            m = mods[j % len(mods)]
            src = dec[("resid", L - 1)] if m == "resid" else dec[(m, L)]
            s = int(rng.integers(len(src)))
            rows.append(src[s] + 0.01 * rng.standard_normal(D))
            truth[(L, j)] = (m, s)
        dec[("resid", L)] = unit(np.asarray(rows))
    for (m, L), w in dec.items():
        rel = release if m == "resid" else f"{release}.{m}"
        p = make_sae(d_in=D, d_sae=len(w), seed=L)
        put_sae(lake, rel, L, replace(p, w_dec=w.astype(np.float32)))
    return dec, truth


def test_planted_predecessors_and_origins_are_recovered_exactly(saew, lake, home):
    from tests.factories_dbt import mart

    dec, truth = planted_release(lake)
    code, out, err = saew("flow", "--release", "p", "--top-k", "3")
    assert code == 0, err
    assert "attn_out at layer 2" in out          # the missing module is said
    links = lake.query("SELECT * FROM flow_links ORDER BY dst_layer, dst_feature, module, rank").to_pylist()
    # every (feature, module present, rank) once, k = 3
    assert len(links) == 3 * (N["r1"] * 3 + N["r2"] * 2)
    by = {}
    for r in links:
        by.setdefault((r["dst_layer"], r["dst_feature"], r["module"]), []).append(r)
    for (L, j, m), rows in by.items():
        assert [r["rank"] for r in rows] == [1, 2, 3]
        src = dec[("resid", L - 1)] if m == "resid" else dec[(m, L)]
        want_i, want_c = dense_topk(dec[("resid", L)][j:j + 1], src, 3)
        assert [r["src_feature"] for r in rows] == want_i[0].tolist()
        np.testing.assert_allclose([r["cosine"] for r in rows], want_c[0], atol=1e-5)
        assert {r["src_layer"] for r in rows} == {L - 1 if m == "resid" else L}
        assert {r["src_release"] for r in rows} == {"p" if m == "resid" else f"p.{m}"}
    for (L, j), (m, s) in truth.items():
        if m != "nowhere":
            top = by[(L, j, m)][0]
            assert top["src_feature"] == s and top["cosine"] > 0.95
    # the marts: origin = the planted module, nowhere for the fresh directions
    code, out, err = saew("build", "--quiet", "--select", "+fct_origin_by_layer")
    assert code == 0, out + err
    got = {(r["layer"], r["feature"]): r for r in mart(home, "select * from fct_feature_origin")}
    short = {"resid": "resid", "mlp_out": "mlp", "attn_out": "attn", "nowhere": "nowhere"}
    assert {k: v["origin"] for k, v in got.items()} == {k: short[m] for k, (m, _) in truth.items()}
    assert all(v["best_cosine"] < 0.5 for k, v in got.items() if truth[k][0] == "nowhere")
    assert all(v["attn_cosine"] is None for k, v in got.items() if k[0] == 2)
    shares = mart(home, "select layer, origin, n, share from fct_origin_by_layer order by layer, origin")
    for L, n in ((1, N["r1"]), (2, N["r2"])):
        rows = [r for r in shares if r["layer"] == L]
        assert len(rows) == 4 and abs(sum(r["share"] for r in rows) - 1) < 1e-12
        for r in rows:
            want = sum(1 for (l2, _), (m, _) in truth.items() if l2 == L and short[m] == r["origin"])
            assert r["n"] == want and r["share"] == pytest.approx(want / n)
    # a re-run replaces its partitions
    code, _, err = saew("flow", "--release", "p", "--top-k", "2")
    assert code == 0, err
    assert lake.query("SELECT count(*) AS n FROM flow_links").column("n")[0].as_py() == \
        2 * (N["r1"] * 3 + N["r2"] * 2)
    query = Path(__file__).resolve().parents[3] / "queries" / "feature_origin_by_layer.sql"
    rows = mart(home, query.read_text())
    assert [(r["layer"], r["n_features"]) for r in rows] == [(1, N["r1"]), (2, N["r2"])]
    assert all(abs(r["resid"] + r["mlp"] + r["attn"] + r["nowhere"] - 1) < 2e-3 for r in rows)


def one_line_error(err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saew: error:") and needle in lines[0], err


def test_bad_inputs_are_one_line_and_write_nothing(saew, lake):
    for L in (0, 1):
        put_sae(lake, "bare", L, make_sae(d_in=16, d_sae=8, seed=L))
    code, _, err = saew("flow", "--release", "bare")
    assert code == 2
    one_line_error(err, "no module SAEs")
    assert "--hooks" in err
    code, _, err = saew("flow", "--release", "nothing")
    assert code == 2
    one_line_error(err, "no SAE ingested")
    put_sae(lake, "bare.mlp_out", 1, make_sae(d_in=16, d_sae=8, seed=5))
    code, _, err = saew("flow", "--release", "bare", "--top-k", "0")
    assert code == 2
    one_line_error(err, "--top-k")
    put_sae(lake, "one", 0, make_sae(d_in=16, d_sae=8))
    put_sae(lake, "one.attn_out", 0, make_sae(d_in=16, d_sae=8))
    code, _, err = saew("flow", "--release", "one")
    assert code == 2
    one_line_error(err, "two residual layers")
    put_sae(lake, "bare.attn_out", 1, make_sae(d_in=12, d_sae=8))
    code, _, err = saew("flow", "--release", "bare")
    assert code == 2
    one_line_error(err, "another width")
    assert not lake.has_data("flow_links")


def test_demo_flow_steps_and_summary(home, lake):
    """``saew demo --flow``: the train step gets the three hooks and the flow layers, flow (and
    verify, where the command exists) run after evaluate, before the build; the summary prints
    the origin shares per layer."""
    import argparse

    from saew.cli import demo
    from saew.cli.commands import STEPS

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    steps = demo._steps(p.parse_args(["--flow"]), "d", 100)
    words = [argv[0] for _, argv in steps]
    train = steps[0][1]
    assert train[train.index("--hooks") + 1] == demo.FLOW_HOOKS
    assert train[train.index("--layers") + 1] == demo.FLOW_LAYERS["smollm2"]
    assert words.index("flow") == words.index("evaluate") + 1 < words.index("build")
    verify = [argv for _, argv in steps if argv[0] == "verify"]
    has = any(c.words == ("verify",) for c in STEPS)
    # one verify call for every family (the model loads once), --link a comma list
    assert [a[a.index("--link") + 1] for a in verify] == ([",".join(demo.FLOW_VERIFY_LINKS)] if has else [])
    assert all(words.index("flow") < words.index("verify") < words.index("build") for _ in verify)
    plain = demo._steps(p.parse_args([]), "d", 100)
    assert "--hooks" not in plain[0][1] and "flow" not in [a[0] for _, a in plain]
    assert plain[0][1][plain[0][1].index("--layers") + 1] == "all"
    # the summary lines, from a built catalog
    import duckdb

    from tests.factories import run_saew

    planted_release(lake)
    assert run_saew(home, "flow", "--release", "p")[0] == 0
    code, out, err = run_saew(home, "build", "--quiet", "--select", "+fct_origin_by_layer")
    assert code == 0, out + err
    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    try:
        lines = demo.origin_lines(con, "p")
        assert demo.origin_lines(con, "no-such-release") == []
    finally:
        con.close()
    assert lines[1].split() == ["layer", "resid", "mlp", "attn", "nowhere"]
    assert [ln.split()[0] for ln in lines[2:]] == ["1", "2"]
    assert all(abs(sum(map(float, ln.split()[1:])) - 1) < 2e-3 for ln in lines[2:])


def test_a_failed_run_keeps_its_finished_layers_and_the_rerun_does_the_rest(saew, lake, monkeypatch):
    from saew.compute.flow import step

    planted_release(lake)
    real = step.flow_layer
    calls = []

    def fails_on_the_second(dst, sources, k, device="cpu"):
        calls.append(len(sources))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(dst, sources, k, device)

    monkeypatch.setattr(step, "flow_layer", fails_on_the_second)
    with pytest.raises(RuntimeError, match="killed"):
        saew("flow", "--release", "p")
    kept = lake.query("SELECT DISTINCT dst_layer FROM flow_links").column("dst_layer").to_pylist()
    assert kept == [1]                                  # layer 1 committed as its own unit
    monkeypatch.setattr(step, "flow_layer", real)
    code, out, err = saew("flow", "--release", "p")
    assert code == 0, err
    assert "kept 1 unit" in out and "pair=1-2" not in out.split("kept")[1]
    assert lake.query("SELECT DISTINCT dst_layer FROM flow_links ORDER BY 1").column(
        "dst_layer").to_pylist() == [1, 2]
