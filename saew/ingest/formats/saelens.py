"""SAELens folders: ``cfg.json`` + ``sae_weights.safetensors`` (v6 and pre-6 configs).

Tensors (SAELens orientation, kept as is): W_enc [d_in, d_sae], W_dec [d_sae, d_in],
b_enc [d_sae], b_dec [d_in], threshold [d_sae] (jumprelu; ``log_threshold`` is exponentiated).
Architectures: ``standard`` -> relu; ``jumprelu``, ``topk`` (``k``), ``gated`` as they are
(a gated SAE keeps its gate path: W_enc and ``b_gate`` as b_enc; r_mag/b_mag have no column).
Pre-6 configs: ``hook_point``, ``hook_point_layer``, ``activation_fn_str`` (``topk`` with
``activation_fn_kwargs.k`` -> topk), boolean ``normalize_activations``.
A ``finetuning_scaling_factor`` / ``scaling_factor`` tensor multiplies the feature activations
before decoding, so it is folded into the decoder rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams
from saew.sae.saelens import CFG_FILE, WEIGHTS_FILE

from .raw import (Loaded, as_int, expect_shape, layer_from_hook, read_json, read_safetensors,
                  take, to_numpy)

_ARCH = {"standard": "relu", "relu": "relu", "jumprelu": "jumprelu", "jump_relu": "jumprelu",
         "topk": "topk", "batchtopk": "topk", "gated": "gated"}


def folder_of(path: Path) -> Path:
    return path.parent if path.is_file() else path


def _is_pre6(cfg: dict) -> bool:
    v = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not v:
        return True
    try:
        return int(str(v).split(".")[0]) < 6
    except ValueError:
        return False


def load(path: Path) -> Loaded:
    folder = folder_of(path)
    cfg_path, w_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise BadInput(f"{cfg_path}: expected a JSON object")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    model = meta.get("model_name") or cfg.get("model_name") or ""
    layer = layer_from_hook(hook)
    if layer is None:
        layer = as_int(cfg.get("hook_point_layer", cfg.get("hook_layer", meta.get("hook_layer"))),
                       cfg_path, "hook_point_layer")

    arch_name = str(cfg.get("architecture") or "standard").lower()
    k = as_int(cfg.get("k"), cfg_path, "k")
    if _is_pre6(cfg):
        fn = cfg.get("activation_fn_str", cfg.get("activation_fn"))
        kw = cfg.get("activation_fn_kwargs") or {}
        if fn == "topk" and isinstance(kw, dict) and kw.get("k") is not None:
            arch_name, k = "topk", as_int(kw["k"], cfg_path, "activation_fn_kwargs.k")
    if arch_name not in _ARCH:
        raise BadInput(f"{cfg_path}: unsupported SAELens architecture {arch_name!r} "
                       f"(supported: {', '.join(sorted(_ARCH))})")
    arch = _ARCH[arch_name]
    if arch == "topk" and not k:
        raise BadInput(f"{cfg_path}: a topk SAE needs k in its config")
    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool):
        norm = "expected_average_only_in" if norm else "none"
    norm = str(norm or "none")

    t, sha = read_safetensors(w_path)
    w_enc = to_numpy(take(t, w_path, "W_enc"), w_path, "W_enc")
    w_dec = to_numpy(take(t, w_path, "W_dec"), w_path, "W_dec")
    d_in = as_int(cfg.get("d_in"), cfg_path, "d_in")
    d_sae = as_int(cfg.get("d_sae"), cfg_path, "d_sae")
    d_in = d_in if d_in is not None else int(w_dec.shape[-1])
    d_sae = d_sae if d_sae is not None else int(w_dec.shape[0])
    why = f"{cfg_path.name} says d_in={d_in}, d_sae={d_sae}"
    expect_shape(w_enc, (d_in, d_sae), w_path, "W_enc", why)
    expect_shape(w_dec, (d_sae, d_in), w_path, "W_dec", why)
    if arch == "gated":
        b_enc = to_numpy(take(t, w_path, "b_gate"), w_path, "b_gate")
    else:
        b_enc = to_numpy(take(t, w_path, "b_enc"), w_path, "b_enc")
    b_dec = to_numpy(take(t, w_path, "b_dec"), w_path, "b_dec")
    threshold = None
    if arch == "jumprelu":
        if "threshold" in t:
            threshold = to_numpy(t["threshold"], w_path, "threshold")
        elif "log_threshold" in t:
            threshold = np.exp(to_numpy(t["log_threshold"], w_path, "log_threshold"))
        else:
            raise BadInput(f"{w_path}: a jumprelu SAE needs a 'threshold' tensor")
    scale = t.get("finetuning_scaling_factor", t.get("scaling_factor"))
    if scale is not None:
        s = to_numpy(scale, w_path, "scaling_factor").reshape(-1)
        if s.shape != (d_sae,) and s.size != 1:
            raise BadInput(f"{w_path}: scaling_factor has shape {s.shape}, expected ({d_sae},) ({why})")
        if not np.all(s == 1):
            w_dec = w_dec * s.reshape(-1, 1)
    p = SAEParams(w_enc=w_enc, b_enc=b_enc, w_dec=w_dec, b_dec=b_dec, architecture=arch,
                  threshold=threshold, k=k if arch == "topk" else None, normalize=norm,
                  apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
                  model=str(model or ""), hook=str(hook or ""))
    return Loaded(params=p, layer=layer, fmt="saelens", weights_path=w_path, sha256=sha)
