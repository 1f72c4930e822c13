"""The bf16-screened exact TopK encode against a float64 numpy oracle, planted near-ties inside
the bf16 error band, the overflow fallback, and ``saew harvest --screen`` end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from saew.compute.activations.topk_screen import (ScreenedTopK, error_coefficients, screen_lhs, screen_rhs,
                                                  use_screen)
from saew.sae.encode import TorchSAE
from tests.factories import make_sae, put_sae
from tests.factories_harvest import write_txt


def _oracle(sae: TorchSAE, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """float64 pre-activations of the float32 inputs: (top-k feature sets as sorted [n, k],
    their values rounded to float32 and clamped at 0)."""
    xc = sae.normalise(x)[0]
    if sae.apply_b_dec_to_input:
        xc = xc - sae.b_dec
    pre = xc.double().numpy() @ sae.w_enc.double().numpy() + sae.b_enc.double().numpy()
    idx = np.sort(np.argsort(-pre, axis=1, kind="stable")[:, :sae.k], axis=1)
    val = np.maximum(np.take_along_axis(pre, idx, 1), 0).astype(np.float32)
    return idx, val


def _dense(rows, feat, val, n, m) -> np.ndarray:
    out = np.zeros((n, m), np.float32)
    out[rows.numpy(), feat.numpy()] = val.numpy()
    return out


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("d, m, k, ln", [(384, 4096, 32, False), (64, 512, 8, True), (48, 100, 7, False)])
def test_screened_topk_is_the_float64_topk(d, m, k, ln, depth):
    sae = TorchSAE.from_params(make_sae(d, m, "topk", seed=d, k=k,
                                        normalize="layer_norm" if ln else "none"))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, d, generator=g) * 3
    x[:, 0] *= 40                                   # an outlier dimension, as LM residuals have
    scr = ScreenedTopK.prepare(sae, depth)
    rows, feat, val = scr.encode_sparse(x)
    idx, exp = _oracle(sae, x)
    want = np.zeros((300, m), np.float32)
    np.put_along_axis(want, idx, exp, 1)
    got = _dense(rows, feat, val, 300, m)
    np.testing.assert_array_equal(got, want)        # the same features, the float64 values in float32
    assert k <= scr.exact_per_row < (2 if depth == 3 else 4) * k   # only a few computed exactly
    # row-major order, as TorchSAE.encode_sparse
    key = rows.numpy() * m + feat.numpy()
    assert (np.diff(key) > 0).all()
    # and the plain float32 path agrees within float32 rounding
    r0, f0, v0 = sae.encode_sparse(x)
    assert torch.equal(r0, rows) and torch.equal(f0, feat)
    np.testing.assert_allclose(v0.numpy(), val.numpy(), rtol=1e-5, atol=1e-6)


def test_planted_near_ties_inside_the_bf16_band_are_resolved_exactly():
    """Features whose pre-activations differ by far less than bf16 can tell apart: the screen
    keeps them all as candidates and the exact values decide, as the float64 oracle does."""
    d, m, k = 64, 256, 4
    rng = np.random.default_rng(0)
    p = make_sae(d, m, "topk", seed=5, k=k, apply_b_dec_to_input=False)
    base = rng.standard_normal(d).astype(np.float32)
    base /= np.linalg.norm(base)
    w = p.w_enc.copy() * 0.1
    for j in range(8):          # 8 near-copies of one direction: 8 almost equal top values
        w[:, 10 * j + 3] = base * (1 + 1e-4 * (j - 3.5))
    p = type(p)(**{**p.__dict__, "w_enc": w, "b_enc": np.zeros(m, np.float32)})
    sae = TorchSAE.from_params(p)
    x = torch.from_numpy(np.tile(base * 5, (20, 1)) + 1e-3 * rng.standard_normal((20, d)).astype(np.float32))
    for depth in (1, 3):
        scr = ScreenedTopK.prepare(sae, depth)
        rows, feat, val = scr.encode_sparse(x)
        idx, exp = _oracle(sae, x)
        np.testing.assert_array_equal(feat.numpy().reshape(20, k), idx)
        np.testing.assert_array_equal(val.numpy().reshape(20, k), exp)
        assert scr.exact_per_row >= 8               # every near-tie was computed exactly
    # the planted values are closer than the bound's own width: bf16 alone could not order them
    a, _ = error_coefficients(d)
    top = np.sort(exp, axis=1)[:, ::-1]
    assert (top[:, 0] - top[:, 1] < a * top[:, 0]).all()


@pytest.mark.parametrize("depth", [1, 3])
def test_overflow_falls_back_to_the_float32_path(depth):
    sae = TorchSAE.from_params(make_sae(16, 32, "topk", seed=2, k=3))
    x = torch.full((4, 16), 3e38)
    x[:, ::2] *= -1
    scr = ScreenedTopK.prepare(sae, depth)
    got = scr.encode_sparse(x)
    want = sae.encode_sparse(x)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("depth", [1, 3])
def test_the_error_bound_holds_for_every_entry(depth):
    """|x_i . w_j - G_ij| <= a |G_ij| + c ||x_i|| ||w_j|| for every (i, j) of the screening
    GEMM, against float64 products, with an outlier dimension and tiny and huge scales; the
    1-deep bound is wider than the 3-deep one."""
    rng = np.random.default_rng(depth)
    d, m = 256, 700
    x = rng.standard_normal((200, d)) * np.logspace(-3, 3, 200)[:, None]
    x[:, 5] *= 50
    w = rng.standard_normal((d, m)) / 16
    xt, wt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
    g = (screen_lhs(xt, depth) @ screen_rhs(wt, depth)).double().numpy()   # the GEMM encodes run
    exact = xt.double().numpy() @ wt.double().numpy()
    a, c = error_coefficients(d, depth)
    s = np.linalg.norm(xt.double().numpy(), axis=1)[:, None] * np.linalg.norm(wt.double().numpy(), axis=0)[None]
    assert (np.abs(exact - g) <= a * np.abs(g) + c * s).all()
    assert error_coefficients(d, 1)[1] > error_coefficients(d, 3)[1]
    for bad in (lambda: error_coefficients(d, 2), lambda: screen_lhs(xt, 2), lambda: screen_rhs(wt, 2)):
        with pytest.raises(ValueError):
            bad()


def test_use_screen():
    assert not use_screen("float32", "cpu", "topk")
    assert not use_screen("bfloat16", "cpu", "relu")
    assert not use_screen("bfloat16", "cuda:0", "topk")
    assert use_screen("bfloat16", "cpu", "topk")


def test_harvest_screen_gives_the_float32_codes(lake, saew, tmp_path):
    """``--screen bfloat16`` and ``--screen float32`` harvest the same (layer, token, feature)
    rows, values within float32 rounding, for a narrow and a wide TopK SAE (the two screen
    depths on a CPU without AMX) beside a ReLU one; a bad ``--screen`` is one line, exit 2."""
    put_sae(lake, "r", 1, make_sae(384, 512, "topk", seed=7, k=16))
    put_sae(lake, "r", 2, make_sae(384, 2400, "topk", seed=9, k=16))   # >= 6 d_in: 1-deep without AMX
    put_sae(lake, "r", 3, make_sae(384, 64, "relu", seed=8))
    corpus = write_txt(tmp_path / "c.txt")
    base = ("harvest", "--release", "r", "--model", "minilm", "--corpus", corpus, "--tokens", 40,
            "--batch-size", 2, "--seq-len", 32)
    got = {}
    for screen in ("float32", "bfloat16"):
        code, out, err = saew(*base, "--screen", screen)
        assert code == 0, err
        got[screen] = lake.query("SELECT layer, token_id, feature, value FROM activations "
                                 "ORDER BY layer, token_id, feature").to_pydict()
    a, b = got["float32"], got["bfloat16"]
    assert [a[c] for c in ("layer", "token_id", "feature")] == [b[c] for c in ("layer", "token_id", "feature")]
    assert len(a["value"]) > 0
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-5, atol=1e-6)
    code, out, err = saew(*base, "--screen", "int8")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--screen" in err


@pytest.mark.parametrize("n, m, k", [(1, 64, 64), (5, 64, 63), (130, 96, 1)])
def test_exact_ties_go_to_the_lower_feature_and_edge_shapes(n, m, k):
    """Duplicated encoder columns tie exactly: the lower feature wins, as a stable sort of the
    float64 oracle; k = d_sae, k = 1 and a single row run the same selection."""
    d = 32
    p = make_sae(d, m, "topk", seed=3, k=k, apply_b_dec_to_input=False)
    w = p.w_enc.copy()
    b = p.b_enc.copy()
    for lo, hi in ((5, 9), (9, 40), (0, m - 1)):
        w[:, hi] = w[:, lo]
        b[hi] = b[lo]
    sae = TorchSAE.from_params(type(p)(**{**p.__dict__, "w_enc": w, "b_enc": b}))
    x = torch.from_numpy(np.random.default_rng(n).standard_normal((n, d)).astype(np.float32) * 2)
    idx, exp = _oracle(sae, x)
    want = np.zeros((n, m), np.float32)
    np.put_along_axis(want, idx, exp, 1)
    for depth in (1, 3):
        rows, feat, val = ScreenedTopK.prepare(sae, depth).encode_sparse(x)
        np.testing.assert_array_equal(_dense(rows, feat, val, n, m), want)


def test_screen_depth_keeps_the_tight_bound_for_narrow_saes_and_with_amx(monkeypatch):
    from saew.compute.activations import topk_screen

    assert topk_screen.screen_depth(384, 1536) == 3
    monkeypatch.setattr(topk_screen, "native_amx", lambda: False)
    assert topk_screen.screen_depth(384, 4096) == 1
    monkeypatch.setattr(topk_screen, "native_amx", lambda: True)
    assert topk_screen.screen_depth(384, 4096) == 3
    sae = TorchSAE.from_params(make_sae(16, 128, "topk", seed=1, k=4))
    assert ScreenedTopK.prepare(sae).depth == 3      # 128 >= 6 x 16 but AMX (patched) keeps 3
