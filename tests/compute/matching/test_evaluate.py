"""Reconstruction through matches: direction of the permutation, fvu by hand, the command."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from saew.compute.matching.evaluate import gathered_decoder, reconstruction_error
from tests.factories import make_sae, put_sae
from tests.factories_match import put_codes
from saew.sae.params import SAEParams


def _planted(seed: int = 0, d_in: int = 8, f: int = 12, tokens: int = 40):
    """Layer l+1 = layer l with feature i moved to pi(i) (W1[pi(i)] = W0[i]) and codes moved
    the same way (f1[pi(i)] = f0[i]): decode_{l+1}(P f_l) reproduces x(l+1) exactly."""
    rng = np.random.default_rng(seed)
    p0 = make_sae(d_in, f, "relu", seed=seed)
    pi = rng.permutation(f)
    while np.array_equal(pi[pi], np.arange(f)):  # not an involution: pi^-1 != pi
        pi = rng.permutation(f)
    inv = np.argsort(pi)
    p1 = SAEParams(w_enc=np.ascontiguousarray(p0.w_enc[:, inv]), b_enc=p0.b_enc[inv],
                   w_dec=p0.w_dec[inv], b_dec=(0.1 * rng.standard_normal(d_in)).astype(np.float32))
    f0 = (rng.random((tokens, f)) < 0.25) * rng.uniform(0.5, 2.0, (tokens, f))
    f0[3] = 0  # a token with no active feature at l
    f1 = f0[:, inv]
    return p0, p1, pi, f0.astype(np.float32), f1.astype(np.float32)


def test_fvu_by_hand_and_the_direction_of_the_permutation():
    p0, p1, pi, f0, f1 = _planted()
    f = p0.d_sae
    x = f1 @ p1.w_dec + p1.b_dec  # reference x(l+1)
    den = ((x - x.mean(0)) ** 2).sum()
    decs = {"right": gathered_decoder(p1.w_dec, f, np.arange(f), pi),
            "backwards": gathered_decoder(p1.w_dec, f, np.arange(f), np.argsort(pi)),  # public code
            "identity": gathered_decoder(p1.w_dec, f, np.arange(f), np.arange(f))}
    num, d, n = reconstruction_error(sp.csr_matrix(f0), sp.csr_matrix(f1), p1.w_dec, decs)
    assert n == len(f0) and abs(d - den) < 1e-6 * den
    for m, w in decs.items():
        x_hat = f0 @ w + p1.b_dec
        assert abs(num[m] - ((x_hat - x) ** 2).sum()) < 1e-6 * den
    assert num["right"] / den < 1e-10
    assert num["backwards"] / den > 0.1 and num["identity"] / den > 0.1
    # the contract's (P f)[pi(i)] = f[i], spelled out on one token
    pf = np.zeros(f, np.float32)
    pf[pi] = f0[0]
    np.testing.assert_allclose(pf @ p1.w_dec, f0[0] @ decs["right"], rtol=1e-5, atol=1e-6)
    # tokens where nothing fires at either layer: x = x_hat = b_dec, they only widen the mean
    num2, d2, n2 = reconstruction_error(sp.csr_matrix(f0), sp.csr_matrix(f1), p1.w_dec, decs, n_zero=10)
    xz = np.concatenate([x, np.repeat(p1.b_dec[None], 10, 0)])
    assert n2 == len(f0) + 10 and abs(d2 - ((xz - xz.mean(0)) ** 2).sum()) < 1e-6 * d2
    assert num2 == pytest.approx(num)


def _lake_with_planted(lake, tokens=40):
    p0, p1, pi, f0, f1 = _planted(tokens=tokens)
    put_sae(lake, "r", 0, p0)
    put_sae(lake, "r", 1, p1)
    put_codes(lake, "r", 0, f0, n_tokens=tokens + 5)
    put_codes(lake, "r", 1, f1, n_tokens=tokens + 5)
    return p0, p1, pi, f0, f1


def test_cli_evaluate_planted(saew, lake):
    p0, p1, pi, f0, f1 = _lake_with_planted(lake)
    assert saew("match", "--release", "r", "--method", "folded")[0] == 0
    m = lake.query("SELECT src_feature, dst_feature FROM matches ORDER BY src_feature")
    assert np.array_equal(np.array(m.column("dst_feature").to_pylist()), pi)  # SAE Match finds pi
    code, out, err = saew("evaluate", "--release", "r")
    assert code == 0, err
    t = lake.query("SELECT method, src_layer, dst_layer, n_tokens, fvu, explained_variance "
                   "FROM reconstruction ORDER BY method")
    rows = {r["method"]: r for r in t.to_pylist()}
    assert set(rows) == {"folded", "identity", "random"}
    assert rows["folded"]["fvu"] < 1e-9 and rows["folded"]["explained_variance"] > 1 - 1e-9
    assert rows["identity"]["fvu"] > 0.1 and rows["random"]["fvu"] > 0.1
    # n_tokens: 39 tokens with activity (token 3 fires nowhere) + 6 silent ones = 45
    assert all(r["n_tokens"] == 45 and (r["src_layer"], r["dst_layer"]) == (0, 1) for r in rows.values())
    # re-running replaces, never duplicates; --tokens limits the tokens used
    assert saew("evaluate", "--release", "r", "--tokens", "10")[0] == 0
    t = lake.query("SELECT method, n_tokens FROM reconstruction")
    assert t.num_rows == 3 and set(t.column("n_tokens").to_pylist()) == {10}


def test_cli_evaluate_matched_baseline_random_from_matches(saew, lake):
    _lake_with_planted(lake)
    assert saew("match", "--release", "r", "--method", "random", "--seed", "3")[0] == 0
    assert saew("evaluate", "--release", "r", "--method", "random", "--seed", "3")[0] == 0
    t = lake.query("SELECT method, fvu FROM reconstruction")
    assert t.column("method").to_pylist() == ["random"] and t.column("fvu")[0].as_py() > 0.1


def test_cli_evaluate_takes_draw_zero_as_the_null_and_skips_the_other_draws(saew, lake):
    _lake_with_planted(lake)
    assert saew("match", "--release", "r", "--method", "folded")[0] == 0
    assert saew("match", "--release", "r", "--method", "random", "--draws", "4")[0] == 0
    code, out, err = saew("evaluate", "--release", "r")
    assert code == 0, err
    t = lake.query("SELECT method FROM reconstruction ORDER BY method")
    assert t.column("method").to_pylist() == ["folded", "identity", "random"]
    assert "random.1" not in out
    # a draw named by --method is evaluated like any method
    assert saew("evaluate", "--release", "r", "--method", "random.2")[0] == 0
    assert "random.2" in lake.query("SELECT method FROM reconstruction").column("method").to_pylist()


@pytest.mark.parametrize("setup, argv, needle", [
    ("no_matches", ["--release", "r"], "no decoder-space matches"),
    ("no_codes", ["--release", "r"], "no activations"),
    ("one_layer", ["--release", "r"], "only layer"),
    ("ok", ["--release", "r", "--tokens", "0"], "--tokens"),
    ("ok", ["--release", "r", "--method", "unfolded"], "--method"),
    ("ok", ["--release", "r", "--space", "pixels"], "--space"),
])
def test_cli_evaluate_bad_input(saew, lake, setup, argv, needle):
    if setup == "one_layer":
        put_sae(lake, "r", 0, make_sae(8, 12))
    else:
        p0, p1, *_ = _planted()
        put_sae(lake, "r", 0, p0)
        put_sae(lake, "r", 1, p1)
        if setup != "no_codes":
            put_codes(lake, "r", 0, np.eye(5, 12))
            put_codes(lake, "r", 1, np.eye(5, 12))
        if setup != "no_matches":
            with lake.transaction():
                lake.write("matches", {"src_feature": np.arange(12, dtype=np.int32),
                                       "dst_layer": np.ones(12, np.int32),
                                       "dst_feature": np.arange(12, dtype=np.int32),
                                       "cost": np.zeros(12), "cosine": np.ones(12)},
                           release="r", space="decoder", method="folded", src_layer=0)
    before = lake.query("SELECT count(*) n FROM runs").column("n")[0].as_py() if lake.has_data("runs") else 0
    code, _, err = saew("evaluate", *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not lake.has_data("reconstruction")
    after = lake.query("SELECT count(*) n FROM runs").column("n")[0].as_py() if lake.has_data("runs") else 0
    assert after == before


def _four_layers(lake) -> None:
    rng = np.random.default_rng(7)
    for L in range(4):
        put_sae(lake, "r", L, make_sae(8, 12, seed=L))
        put_codes(lake, "r", L, (rng.random((30, 12)) < 0.3) * rng.uniform(0.5, 2.0, (30, 12)), n_tokens=34)


def test_a_failed_evaluate_keeps_the_pairs_before_it_and_the_rerun_does_the_rest(saew, lake, monkeypatch,
                                                                                tmp_path):
    import saew.compute.matching.evaluate as step
    from saew.storage.lake import Lake

    def rows(lk):
        return lk.query("SELECT method, src_layer, dst_layer, n_tokens, fvu, explained_variance "
                        "FROM reconstruction ORDER BY method, src_layer").to_pylist()

    _four_layers(lake)
    assert saew("match", "--release", "r", "--method", "folded")[0] == 0
    real, calls = step._pair_job, []

    def failing(l0, *rest):
        calls.append(l0)
        if l0 == 2:
            raise RuntimeError("killed at pair 2-3")
        return real(l0, *rest)

    monkeypatch.setattr(step, "_pair_job", failing)
    with pytest.raises(RuntimeError, match="killed at pair 2-3"):
        saew("evaluate", "--release", "r")
    assert calls == [0, 1, 2]
    assert {(r["method"], r["src_layer"]) for r in rows(lake)} == {
        (m, L) for m in ("folded", "identity", "random") for L in (0, 1)}
    assert lake.query("SELECT status, units FROM runs WHERE command = 'evaluate'").to_pylist() == [
        {"status": "partial", "units": ["pair=0-1", "pair=1-2"]}]

    calls.clear()
    monkeypatch.setattr(step, "_pair_job", lambda l0, *rest: (calls.append(l0), real(l0, *rest))[1])
    code, out, err = saew("evaluate", "--release", "r")
    assert code == 0, err
    assert calls == [2] and "kept 2 unit(s)" in out and "over 3 pair(s)" in out
    other = Lake(tmp_path / "other")
    _four_layers(other)
    assert saew("match", "--release", "r", "--method", "folded", home_dir=tmp_path / "other")[0] == 0
    assert saew("evaluate", "--release", "r", home_dir=tmp_path / "other")[0] == 0
    assert rows(lake) == rows(other) and len(rows(lake)) == 9


def test_evaluate_takes_the_executor_options(saew, lake):
    """Two spawned workers give the rows of this process."""
    _four_layers(lake)
    assert saew("match", "--release", "r", "--method", "folded")[0] == 0
    assert saew("evaluate", "--release", "r", "--workers", "1")[0] == 0
    one = lake.query("SELECT * FROM reconstruction ORDER BY ALL").to_pylist()
    code, _, err = saew("evaluate", "--release", "r", "--executor", "local", "--workers", "2",
                        "--device", "cpu")
    assert code == 0, err
    assert lake.query("SELECT * FROM reconstruction ORDER BY ALL").to_pylist() == one
