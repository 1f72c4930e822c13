"""``saew train --hooks``: module outputs captured in the same pass, checked against independent
oracles (a block's own arithmetic, TransformerLens' run_with_cache), and the sibling releases."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saew.compute.lm.model import LoadedModel, ModelSpec, hook_outputs, residuals
from saew.compute.training.hooks import parse_hooks, units
from saew.sae import saelens as saelens_io
from saew.errors import BadInput
from tests.factories_harvest import DOCS, minilm_tokenizer, tiny_tl_model


def tiny_llama(n_layers: int = 3, d_model: int = 32) -> LoadedModel:
    """A random-init Hugging Face LLaMA (pre-LN blocks, like SmolLM2) with minilm's tokenizer."""
    from transformers import LlamaConfig, LlamaModel

    tok = minilm_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=d_model, intermediate_size=2 * d_model,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64)
    module = LlamaModel(cfg).eval()
    return LoadedModel(ModelSpec("tiny-llama", n_layers, d_model), tok, module, "hf",
                       [tok.cls_token_id], [], 64)


def test_parse_hooks_and_units():
    assert parse_hooks(None) == ("resid_post",)
    assert parse_hooks("attn_out, resid_post,mlp_out,attn_out") == ("resid_post", "mlp_out", "attn_out")
    for bad in ("resid_pre", "mlp", "resid_post,blocks.1.hook_mlp_out", ","):
        with pytest.raises(BadInput, match="--hooks"):
            parse_hooks(bad)
    u = units("r", ("resid_post", "mlp_out"), [2, 3])
    assert [(x.layer, x.hook, x.release) for x in u] == [
        (2, "blocks.2.hook_resid_post", "r"), (2, "blocks.2.hook_mlp_out", "r.mlp_out"),
        (3, "blocks.3.hook_resid_post", "r"), (3, "blocks.3.hook_mlp_out", "r.mlp_out")]


def test_hf_llama_modules_add_up_to_the_residual_stream():
    """Pre-LN: resid_post[L] = resid_post[L-1] + attn_out[L] + mlp_out[L] (the block's own sum,
    an oracle independent of the hooks); one pass, batched and padded, equal to resid-only runs."""
    m = tiny_llama()
    pts = ("resid_post", "mlp_out", "attn_out")
    out = hook_outputs(m, DOCS, 80, [0, 1, 2], pts, batch_size=3, seq_len=20)
    assert all(out[k].shape == (80, 32) for k in out) and len(out) == 9
    for L in (1, 2):
        torch.testing.assert_close(out[("resid_post", L)],
                                   out[("resid_post", L - 1)] + out[("attn_out", L)] + out[("mlp_out", L)],
                                   atol=1e-5, rtol=1e-5)
    assert (out[("mlp_out", 1)] - out[("attn_out", 1)]).abs().max() > 1e-3  # two different things
    plain = residuals(m, DOCS, 80, [0, 1, 2], batch_size=1, seq_len=20)
    for L in (0, 1, 2):
        torch.testing.assert_close(out[("resid_post", L)], plain[L], atol=1e-5, rtol=1e-5)
    # modules of the last layer only: the pass still runs through that block
    last = hook_outputs(m, DOCS, 30, [2], ("mlp_out",), seq_len=20)
    torch.testing.assert_close(last[("mlp_out", 2)], out[("mlp_out", 2)][:30], atol=1e-5, rtol=1e-5)


def test_tl_modules_match_run_with_cache():
    tl = tiny_tl_model()
    from saew.compute.lm.load import load_model_from_tl

    m = load_model_from_tl(tl, "tiny")
    out = hook_outputs(m, DOCS, 50, [0, 1], ("resid_post", "mlp_out", "attn_out"), batch_size=2, seq_len=20)
    want: dict = {}
    for _, _, ids, _ in m.sequences(DOCS, 50, 20):
        _, cache = tl.run_with_cache(torch.tensor([m.prefix + ids + m.suffix]))
        sl = slice(len(m.prefix), len(m.prefix) + len(ids))
        for L in (0, 1):
            for p in ("resid_post", "mlp_out", "attn_out"):
                want.setdefault((p, L), []).append(cache[f"blocks.{L}.hook_{p}"][0, sl])
    for k, parts in want.items():
        torch.testing.assert_close(out[k], torch.cat(parts), atol=1e-5, rtol=1e-5)


def test_minilm_post_ln_modules_rebuild_the_block_output():
    """BERT (post-LN): resid_post[L] = LN2(mlp_out + LN1(attn_out + resid_post[L-1])), with the
    block's own LayerNorms; attn_out / mlp_out are the dense projections before the residual add."""
    from saew.compute.lm.load import load_model

    m = load_model("minilm")
    out = hook_outputs(m, DOCS[:2], 40, [0, 1], ("resid_post", "mlp_out", "attn_out"))
    blk = m._blocks[1]
    with torch.no_grad():
        a = blk.attention.output.LayerNorm(out[("attn_out", 1)] + out[("resid_post", 0)])
        rebuilt = blk.output.LayerNorm(out[("mlp_out", 1)] + a)
    torch.testing.assert_close(rebuilt, out[("resid_post", 1)], atol=1e-4, rtol=1e-4)


def test_saew_train_hooks_sibling_releases(saew, lake, home):
    """One pass trains resid_post, mlp_out and attn_out SAEs per layer into r, r.mlp_out and
    r.attn_out (SAELens folders under each release), harvesting all three."""
    from sae_lens import SAE

    code, out, err = saew("train", "--release", "r", "--model", "minilm", "--layers", "0-1",
                          "--tokens", "300", "--d-sae", "48", "--k", "4", "--steps", "3",
                          "--batch-size", "128", "--hooks", "resid_post,mlp_out,attn_out", "--harvest",
                          "--workers", "1")
    assert code == 0, err
    rows = lake.query("SELECT release, layer, hook, d_in, d_sae, source_path FROM saes "
                      "ORDER BY release, layer").to_pylist()
    assert [(r["release"], r["layer"], r["hook"]) for r in rows] == [
        ("r", 0, "blocks.0.hook_resid_post"), ("r", 1, "blocks.1.hook_resid_post"),
        ("r.attn_out", 0, "blocks.0.hook_attn_out"), ("r.attn_out", 1, "blocks.1.hook_attn_out"),
        ("r.mlp_out", 0, "blocks.0.hook_mlp_out"), ("r.mlp_out", 1, "blocks.1.hook_mlp_out")]
    for r in rows:
        folder = home / "saes" / r["release"] / r["hook"]
        assert r["source_path"] == str(folder) and (r["d_in"], r["d_sae"]) == (384, 48)
        cfg = json.loads((folder / saelens_io.CFG_FILE).read_text())
        assert cfg["metadata"]["hook_name"] == r["hook"]
        SAE.load_from_disk(str(folder))
    logs = lake.query("SELECT release, count(DISTINCT layer) AS n FROM training_log GROUP BY 1 "
                      "ORDER BY 1").to_pylist()
    assert logs == [{"release": r, "n": 2} for r in ("r", "r.attn_out", "r.mlp_out")]
    sets = lake.query("SELECT release, layer, n_tokens FROM activation_sets ORDER BY 1, 2").to_pylist()
    assert [(s["release"], s["n_tokens"]) for s in sets] == [(r, 300) for r in
                                                            ("r", "r", "r.attn_out", "r.attn_out", "r.mlp_out", "r.mlp_out")]
    # the module SAEs differ from the residual ones (they were trained on other inputs)
    w = lake.query("SELECT release, w_dec FROM features WHERE layer = 1 AND feature = 0 ORDER BY 1").to_pylist()
    assert len({tuple(np.round(r["w_dec"], 4)) for r in w}) == 3
    # the default stays resid_post only
    code, out, err = saew("train", "--release", "plain", "--model", "minilm", "--layers", "0",
                          "--tokens", "200", "--d-sae", "32", "--k", "4", "--steps", "1",
                          "--batch-size", "64", "--workers", "1")
    assert code == 0, err
    assert lake.query("SELECT count(*) AS n FROM saes WHERE release LIKE 'plain%'").column("n")[0].as_py() == 1


@pytest.mark.parametrize("hooks", ["mlp_in", "resid_post,hook_attn_out", ""])
def test_saew_train_unknown_hook_is_one_line_and_writes_nothing(saew, home, hooks):
    code, _, err = saew("train", "--release", "bad", "--model", "minilm", "--layers", "0",
                        "--tokens", "64", "--steps", "1", "--hooks", hooks)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saew: error: --hooks"), err
    assert not (home / "lake").exists() or not any((home / "lake").rglob("*.parquet"))
    assert not (home / "saes").exists()
