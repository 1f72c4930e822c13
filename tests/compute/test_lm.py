"""Models: residual capture checked against Hugging Face / TransformerLens run independently."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from saew.compute.lm.load import load_model, load_model_from_tl
from saew.compute.lm.model import parse_hook, residuals
from tests.factories_harvest import DOCS, tiny_tl_model
from saew.errors import BadInput


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def _hf_hidden(m, text: str) -> tuple[tuple[torch.Tensor, ...], int]:
    enc = m.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = m.module(**enc, output_hidden_states=True)
    return out.hidden_states, enc["input_ids"].shape[1]


def test_minilm_spec_and_cache(minilm):
    assert (minilm.spec.name, minilm.spec.n_layers, minilm.spec.d_model) == ("minilm", 6, 384)
    assert load_model("minilm") is minilm
    assert minilm.hook_name(3) == "blocks.3.hook_resid_post"
    assert minilm.tokenizer.convert_ids_to_tokens(minilm.prefix + minilm.suffix) == ["[CLS]", "[SEP]"]


def test_minilm_resid_post_is_hidden_states_l_plus_1(minilm):
    """resid_post of block L = HF hidden_states[L + 1] (post-LayerNorm), without [CLS]/[SEP];
    resid_pre of block L = hidden_states[L]."""
    text = DOCS[0]
    hs, n_with_special = _hf_hidden(minilm, text)
    n = n_with_special - 2
    r = residuals(minilm, [text], 10_000, [0, 2, 5])
    for L in (0, 2, 5):
        assert r[L].shape == (n, 384) and r[L].dtype == torch.float32
        torch.testing.assert_close(r[L], hs[L + 1][0, 1:-1], atol=1e-5, rtol=1e-5)
    b = next(minilm.iter_batches([text], 10_000, [3], points={3: "resid_pre"}))
    torch.testing.assert_close(b.resid[3], hs[3][0, 1:-1], atol=1e-5, rtol=1e-5)


def test_minilm_batches_exact_count_ids_text_and_padding(minilm):
    """Exactly n_tokens, global ids, doc/pos, texts that rebuild the documents, and padded
    batches equal to one-sequence-at-a-time runs."""
    n = 50
    batches = list(minilm.iter_batches(DOCS, n, [1, 4], batch_size=3, seq_len=12))
    ids = np.concatenate([b.token_ids for b in batches])
    assert ids.dtype == np.int64 and ids.tolist() == list(range(n))
    doc = np.concatenate([b.doc for b in batches])
    pos = np.concatenate([b.pos for b in batches])
    texts = [t for b in batches for t in b.tokens]
    assert len(texts) == n and doc.dtype == np.int32 and pos.dtype == np.int32
    for d in np.unique(doc):
        sel = doc == d
        assert pos[sel].tolist() == list(range(sel.sum()))
        assert DOCS[d].startswith("".join(t for t, s in zip(texts, sel) if s))
    full_docs = [d for d in np.unique(doc) if (doc == d).sum() == len(minilm.tokenizer(DOCS[d], add_special_tokens=False)["input_ids"])]
    assert all("".join(t for t, s in zip(texts, doc == d) if s) == DOCS[d] for d in full_docs)
    # same tokens one sequence at a time, seq_len 12 -> 10 real tokens per sequence
    single = list(minilm.iter_batches(DOCS, n, [1, 4], batch_size=1, seq_len=12))
    assert all(len(b) <= 10 for b in single)
    for L in (1, 4):
        torch.testing.assert_close(torch.cat([b.resid[L] for b in batches]),
                                   torch.cat([b.resid[L] for b in single]), atol=1e-5, rtol=1e-5)


def test_tl_model_matches_run_with_cache():
    tl = tiny_tl_model()
    m = load_model_from_tl(tl, "tiny")
    assert (m.spec.n_layers, m.spec.d_model, m.max_len) == (2, 32, 64)
    r = residuals(m, DOCS, 60, [0, 1], batch_size=2, seq_len=20)
    assert r[0].shape == (60, 32)
    # oracle: each sequence alone through run_with_cache, special tokens dropped
    expected = {0: [], 1: []}
    for _, _, ids, _ in m.sequences(DOCS, 60, 20):
        _, cache = tl.run_with_cache(torch.tensor([m.prefix + ids + m.suffix]))
        for L in (0, 1):
            expected[L].append(cache[f"blocks.{L}.hook_resid_post"][0, len(m.prefix):len(m.prefix) + len(ids)])
    for L in (0, 1):
        torch.testing.assert_close(r[L], torch.cat(expected[L]), atol=1e-5, rtol=1e-5)


def test_an_abandoned_batch_iterator_leaves_grad_mode_alone():
    """The forward runs in inference mode, the caller between batches does not; a caller that
    stops mid-corpus (an exception) leaves autograd as it was (it once stayed off for the rest
    of the process)."""
    m = load_model_from_tl(tiny_tl_model(), "tiny")
    it = m.iter_batches(DOCS, 60, [0, 1], batch_size=2, seq_len=20)
    b = next(it)
    assert b.resid[1].shape[1] == 32 and not b.resid[1].requires_grad
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    del it, b
    w = torch.ones(3, requires_grad=True)
    (w * 2).sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]


def test_bad_models_and_arguments(minilm, tmp_path):
    with pytest.raises(BadInput, match="unknown model"):
        load_model("no-such-model")
    with pytest.raises(BadInput, match="not a Hugging Face model folder"):
        load_model(str(tmp_path / "missing" / "model"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="cannot load a Hugging Face model"):
        load_model(str(empty))
    with pytest.raises(BadInput, match="accepts at most 512"):
        next(minilm.iter_batches(DOCS, 10, [0], seq_len=1000))
    with pytest.raises(BadInput, match="too short"):
        next(minilm.iter_batches(DOCS, 10, [0], seq_len=2))
    with pytest.raises(BadInput, match="layers 0..5"):
        next(minilm.iter_batches(DOCS, 10, [6]))
    with pytest.raises(BadInput, match="must be positive"):
        next(minilm.iter_batches(DOCS, 0, [0]))
    assert parse_hook("blocks.7.hook_resid_pre", 3) == (7, "resid_pre")
    assert parse_hook("", 3) == (3, "resid_post")
    with pytest.raises(BadInput, match="resid_post"):
        parse_hook("blocks.1.hook_mlp_out", 1)


def test_tl_name_not_cached_is_bad_input():
    with pytest.raises(BadInput, match="TransformerLens model offline"):
        load_model("gpt2")


def test_smollm2_gguf_loads_30_layers_of_576():
    """The embedded causal LM: GGUF dequantised to float32 (slow: ~30-60 s, once per process)."""
    m = load_model("smollm2")
    assert (m.spec.n_layers, m.spec.d_model) == (30, 576)
    assert m.prefix == [m.tokenizer.bos_token_id] and m.suffix == []  # BOS fed, never returned
    b = next(m.iter_batches(["def f(x):\n    return x"], 6, [0, 29], seq_len=16))
    assert len(b) == 6 and b.resid[29].shape == (6, 576) and torch.isfinite(b.resid[29]).all()
    assert "".join(b.tokens) == "def f(x):\n    return x"[:len("".join(b.tokens))]
