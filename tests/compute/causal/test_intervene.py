"""``compute.causal.intervene``: switching one SAE feature off, against closed forms.

The hand-built model is linear, two blocks over an embedding (d = 6):

  block 0:  h1_t = A h0_t
  block 1:  h2_t = B h1_t + C mean_{s <= t} h1_s + mlp(h1_t),   mlp(x) = M x   (a submodule)

Switching source feature s of a relu SAE off at blocks.0.hook_resid_post removes
a_t w_s (a_t = f_s(h1_t)) at every token t, so at the window's last token T

  h2'_T = h2_T - a_T (B + M) w_s - (1/T) sum_t a_t C w_s

and the destination SAE reads relu((h2'_T - b_dec) W_enc + b_enc): that is the exact expected
act_after. At blocks.1.hook_mlp_out only the MLP's write at T changes: h2'_T = h2_T - a_T w_s
with a_T = f_s(M h1_T). A layer_norm source SAE removes a_t w_s (std(h1_t) + eps).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from saew.compute.causal.intervene import Point, intervene, make_windows, parse_point
from saew.compute.lm.model import LoadedModel, ModelSpec
from saew.errors import BadInput
from saew.sae.encode import LN_EPS, TorchSAE
from tests.factories import make_sae
from tests.factories_harvest import np_encode

D, VOCAB = 6, 11


class _Block0(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = torch.nn.Parameter(a, requires_grad=False)

    def forward(self, h, attention_mask=None):
        return h @ self.a.T


class _Block1(torch.nn.Module):
    def __init__(self, b, c, m):
        super().__init__()
        self.b = torch.nn.Parameter(b, requires_grad=False)
        self.c = torch.nn.Parameter(c, requires_grad=False)
        self.mlp = torch.nn.Linear(D, D, bias=False)
        self.mlp.weight.data = m

    def forward(self, h, attention_mask=None):
        steps = torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        return h @ self.b.T + (h.cumsum(1) / steps) @ self.c.T + self.mlp(h)


class _Linear2(torch.nn.Module):
    def __init__(self, rng):
        super().__init__()
        t = lambda *s: torch.tensor(rng.standard_normal(s), dtype=torch.float32)  # noqa: E731
        self.emb = torch.nn.Embedding.from_pretrained(t(VOCAB, D))
        self.mats = {k: t(D, D) / np.sqrt(D) for k in "ABCM"}
        self.layers = torch.nn.ModuleList([_Block0(self.mats["A"]),
                                           _Block1(self.mats["B"], self.mats["C"], self.mats["M"])])

    def forward(self, input_ids, attention_mask=None):
        h = self.emb(input_ids)
        for blk in self.layers:
            h = blk(h)
        return h


@pytest.fixture(scope="module")
def lin2():
    net = _Linear2(np.random.default_rng(0))
    return LoadedModel(ModelSpec("lin2", 2, D), None, net, "hf", [], []), net


def _mats(net):
    return {k: v.numpy().astype(np.float64) for k, v in net.mats.items()}, net.emb.weight.numpy().astype(np.float64)


def _seqs():
    return [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 1, 2]]


def _h1(net, seq):
    m, e = _mats(net)
    return e[seq] @ m["A"].T


def _expected_resid(net, seq, p_src, s, layer_norm: bool, n_special: int = 0):
    """(clean h2_T, ablated h2'_T) by the closed form of the module docstring; the first
    ``n_special`` tokens of ``seq`` are special: never edited (a_t = 0 there)."""
    m, _ = _mats(net)
    h1 = _h1(net, seq)
    T = len(seq)
    h2 = h1 @ m["B"].T + (np.cumsum(h1, 0) / np.arange(1, T + 1)[:, None]) @ m["C"].T + h1 @ m["M"].T
    a = np_encode(h1, p_src)[:, s]
    w = p_src.w_dec[s].astype(np.float64)
    if layer_norm:
        a = a * (h1.std(-1, ddof=1) + LN_EPS)
    a[:n_special] = 0
    delta = a[-1] * ((m["B"] + m["M"]) @ w) + a.sum() / T * (m["C"] @ w)
    return h2[-1], h2[-1] - delta, a


def test_relu_and_layer_norm_sources_match_the_closed_form(lin2):
    model, net = lin2
    dst = make_sae(D, 9, "relu", seed=2)
    for layer_norm in (False, True):
        src = make_sae(D, 8, "relu", seed=1, normalize="layer_norm" if layer_norm else "none")
        seqs = _seqs()
        # for each window the source feature with the largest activation at its last token
        feats = np.array([int(np.argmax(np_encode(_h1(net, s), src)[-1])) for s in seqs])
        win = make_windows(seqs, [], [], 0)
        clean, ablated = intervene(model, win, Point(0, "resid_post"), TorchSAE.from_params(src),
                                   torch.from_numpy(feats), Point(1, "resid_post"), TorchSAE.from_params(dst))
        for r, (seq, s) in enumerate(zip(seqs, feats)):
            before, after, a = _expected_resid(net, seq, src, s, layer_norm)
            assert a[-1] > 0
            np.testing.assert_allclose(clean[r].numpy(), np_encode(before[None], dst)[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(ablated[r].numpy(), np_encode(after[None], dst)[0], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(clean, ablated)


def test_module_output_source_changes_only_that_write(lin2):
    model, net = lin2
    m, _ = _mats(net)
    src, dst = make_sae(D, 8, "relu", seed=3), make_sae(D, 9, "relu", seed=4)
    seqs = _seqs()
    outs = [_h1(net, s) @ m["M"].T for s in seqs]     # hook_mlp_out of block 1
    feats = np.array([int(np.argmax(np_encode(o, src)[-1])) for o in outs])
    clean, ablated = intervene(model, make_windows(seqs, [], [], 0), Point(1, "mlp_out"),
                               TorchSAE.from_params(src), torch.from_numpy(feats), Point(1, "resid_post"),
                               TorchSAE.from_params(dst))
    for r, (seq, s, o) in enumerate(zip(seqs, feats, outs)):
        before, _, _ = _expected_resid(net, seq, src, s, False)
        after = before - np_encode(o, src)[-1, s] * src.w_dec[s]
        np.testing.assert_allclose(clean[r].numpy(), np_encode(before[None], dst)[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ablated[r].numpy(), np_encode(after[None], dst)[0], rtol=1e-4, atol=1e-5)


def test_special_tokens_are_never_edited(lin2):
    """A prefix token (BOS-like, special) before every window: it feeds block 1's running mean
    but is never edited (a_0 = 0 in the closed form); rows of different lengths are padded."""
    model, net = lin2
    src, dst = make_sae(D, 8, "relu", seed=5), make_sae(D, 9, "relu", seed=6)
    seqs = _seqs()
    h_pre = _h1(net, [3])
    s = int(np.argmax(np_encode(h_pre, src)[0]))     # a feature the prefix itself activates
    assert np_encode(h_pre, src)[0, s] > 0
    feats = torch.full((len(seqs),), s)
    clean, ablated = intervene(model, make_windows(seqs, [3], [], 0), Point(0, "resid_post"),
                               TorchSAE.from_params(src), feats, Point(1, "resid_post"), TorchSAE.from_params(dst))
    for r, seq in enumerate(seqs):
        before, after, _ = _expected_resid(net, [3] + seq, src, s, False, n_special=1)
        np.testing.assert_allclose(clean[r].numpy(), np_encode(before[None], dst)[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ablated[r].numpy(), np_encode(after[None], dst)[0], rtol=1e-4, atol=1e-5)


def test_hook_points_and_order():
    assert parse_point("", 3, "x") == Point(3, "resid_post")
    assert parse_point("blocks.2.hook_attn_out", 2, "x") == Point(2, "attn_out")
    with pytest.raises(BadInput, match="hook 'blocks.2.hook_q'"):
        parse_point("blocks.2.hook_q", 2, "release r layer 2")
    assert Point(1, "attn_out").order < Point(1, "mlp_out").order < Point(1, "resid_post").order


def test_destination_before_source_is_refused(lin2):
    model, _ = lin2
    sae = TorchSAE.from_params(make_sae(D, 8, "relu", seed=1))
    with pytest.raises(BadInput, match="is not after"):
        intervene(model, make_windows([[1, 2]], [], [], 0), Point(1, "resid_post"), sae,
                  torch.tensor([0]), Point(0, "resid_post"), sae)


def _tiny_llama():
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=50)
    return LoadedModel(ModelSpec("tiny-llama", 3, 32), None, LlamaModel(cfg).eval(), "hf", [], [])


@pytest.mark.parametrize("which", ["lin2", "llama", "tl", "minilm"])
def test_branching_at_the_hook_equals_running_twice(lin2, which):
    """A batch without padding runs the blocks before the source hook once ([h; h'] after it):
    the same codes as the 2B rows run from the start, on a causal HF model (LLaMA), a
    TransformerLens model and a bidirectional one (minilm; a model whose blocks refuse a batch
    that grows at the hook falls back to running twice)."""
    from saew.compute.lm.load import load_model, load_model_from_tl
    from tests.factories_harvest import tiny_tl_model

    model = {"lin2": lambda: lin2[0], "llama": _tiny_llama, "tl": lambda: load_model_from_tl(tiny_tl_model()),
             "minilm": lambda: load_model("minilm")}[which]()
    d = model.spec.d_model
    src, dst = TorchSAE.from_params(make_sae(d, 16, "relu", seed=8)), TorchSAE.from_params(make_sae(d, 12, "relu", seed=9))
    seqs = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [4, 4, 2, 9, 1]]
    win = make_windows(seqs, model.prefix, model.suffix, model.pad_id)
    feats = torch.tensor([0, 3, 5])
    args = (model, win, Point(0, "resid_post"), src, feats, Point(1, "resid_post"), dst)
    auto, twice = intervene(*args), intervene(*args, branch=False)
    for a, b in zip(auto, twice):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.equal(twice[0], twice[1]) or which == "lin2"
