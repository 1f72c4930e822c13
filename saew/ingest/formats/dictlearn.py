"""dictionary_learning (saprmarks/dictionary_learning) ``ae.pt`` + ``config.json``.

config.json: ``trainer: {layer, dict_size, activation_dim, k, lm_name, submodule_name,
trainer_class, dict_class}``. State dicts by ``dict_class``:

* ``AutoEncoder`` (relu): ``bias`` [d] (= b_dec), ``encoder.weight`` [n, d], ``encoder.bias`` [n],
  ``decoder.weight`` [d, n];
* TopK variants (``AutoEncoderTopK``, ``BatchTopKSAE``, ``MatryoshkaBatchTopKSAE``) -> topk:
  ``b_dec`` [d], ``encoder.weight`` [n, d], ``encoder.bias`` [n], ``decoder.weight`` [d, n],
  k from the config (else the ``k`` buffer);
* ``JumpReluAutoEncoder`` -> jumprelu: ``W_enc`` [d, n], ``b_enc``, ``W_dec`` [n, d], ``b_dec``,
  ``threshold`` [n]; it does not subtract b_dec before encoding.

W_enc = encoder.weight^T, W_dec = decoder.weight^T. Other classes (gated) are refused.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams

from saew.ingest.formats.raw import Loaded, as_int, expect_shape, read_bytes, read_json, take, to_numpy, torch_state

AE, CONFIG = "ae.pt", "config.json"
_SUBMODULE = re.compile(r"(resid_post|resid_pre|mlp_out|attn_out|mlp|attn|resid)_layer_?(\d+)")
_SITES = {"resid_post": "hook_resid_post", "resid": "hook_resid_post", "resid_pre": "hook_resid_pre",
          "mlp_out": "hook_mlp_out", "mlp": "hook_mlp_out", "attn_out": "hook_attn_out",
          "attn": "hook_attn_out"}


def folder_of(path: Path) -> Path:
    return path.parent if path.is_file() else path


def _dict_class(trainer: dict, sd: dict) -> str:
    dc = trainer.get("dict_class")
    if dc:
        return str(dc)
    tc = str(trainer.get("trainer_class") or "")
    if "TopK" in tc:
        return "BatchTopKSAE" if "Batch" in tc else "AutoEncoderTopK"
    if "JumpRelu" in tc or "W_enc" in sd:
        return "JumpReluAutoEncoder"
    if "b_dec" in sd:
        return "AutoEncoderTopK"
    return "AutoEncoder"


def load(path: Path) -> Loaded:
    folder = folder_of(path)
    cfg_path, f = folder / CONFIG, (path if path.is_file() else folder / AE)
    cfg = read_json(cfg_path)
    trainer = cfg.get("trainer") if isinstance(cfg, dict) else None
    if not isinstance(trainer, dict):
        raise BadInput(f"{cfg_path}: expected a 'trainer' object")
    d = as_int(trainer.get("activation_dim"), cfg_path, "trainer.activation_dim")
    n = as_int(trainer.get("dict_size"), cfg_path, "trainer.dict_size")
    buf, sha = read_bytes(f)
    sd = torch_state(buf, f)
    del buf
    dc = _dict_class(trainer, sd)
    if dc == "JumpReluAutoEncoder":
        w_enc = to_numpy(take(sd, f, "W_enc"), f, "W_enc")
        w_dec = to_numpy(take(sd, f, "W_dec"), f, "W_dec")
        n0, d0 = w_dec.shape if w_dec.ndim == 2 else (None, None)
        n, d = n or n0, d or d0
        why = f"{CONFIG} says activation_dim={d}, dict_size={n}"
        expect_shape(w_dec, (n, d), f, "W_dec", why)
        expect_shape(w_enc, (d, n), f, "W_enc", why)
        p = SAEParams(w_enc=w_enc, b_enc=to_numpy(take(sd, f, "b_enc"), f, "b_enc"), w_dec=w_dec,
                      b_dec=to_numpy(take(sd, f, "b_dec"), f, "b_dec"), architecture="jumprelu",
                      threshold=to_numpy(take(sd, f, "threshold"), f, "threshold"),
                      apply_b_dec_to_input=False)
    elif dc == "AutoEncoder" or "TopK" in dc:
        enc = to_numpy(take(sd, f, "encoder.weight"), f, "encoder.weight")
        dec = to_numpy(take(sd, f, "decoder.weight"), f, "decoder.weight")
        n0, d0 = enc.shape if enc.ndim == 2 else (None, None)
        n, d = n or n0, d or d0
        why = f"{CONFIG} says activation_dim={d}, dict_size={n}"
        expect_shape(enc, (n, d), f, "encoder.weight", why)
        expect_shape(dec, (d, n), f, "decoder.weight", why)
        b_dec = to_numpy(take(sd, f, "bias", "b_dec", what="bias"), f, "bias")
        k = None
        if "TopK" in dc:
            k = as_int(trainer.get("k"), cfg_path, "trainer.k")
            if k is None and "k" in sd:
                k = as_int(sd["k"], f, "k")
        p = SAEParams(w_enc=enc.T, b_enc=to_numpy(take(sd, f, "encoder.bias"), f, "encoder.bias"),
                      w_dec=np.ascontiguousarray(dec.T), b_dec=b_dec,
                      architecture="topk" if "TopK" in dc else "relu", k=k)
    else:
        raise BadInput(f"{cfg_path}: unsupported dictionary_learning dict_class {dc!r} "
                       f"(supported: AutoEncoder, AutoEncoderTopK, BatchTopKSAE, JumpReluAutoEncoder)")
    sub = _SUBMODULE.search(str(trainer.get("submodule_name") or ""))
    layer = as_int(trainer.get("layer"), cfg_path, "trainer.layer")
    if layer is None and sub:
        layer = int(sub.group(2))
    lm = str(trainer.get("lm_name") or "")
    p = replace(p, model=lm)
    return Loaded(params=p, layer=layer, fmt="dictionary_learning", weights_path=f, sha256=sha,
                  hook_site=_SITES[sub.group(1)] if sub else "hook_resid_post")
