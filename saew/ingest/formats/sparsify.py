"""EleutherAI sparsify folders: ``cfg.json`` + ``sae.safetensors``, one folder per hookpoint.

As ``sparsify.SparseCoder.save_to_disk`` writes them: ``cfg.json`` is the SparseCoderConfig
(``activation`` 'topk', ``k``, ``num_latents`` (0: ``expansion_factor`` x d_in),
``expansion_factor``, ``normalize_decoder``, ``skip_connection``, ``transcode``, ...) plus
``d_in``; tensors ``encoder.weight`` [d_sae, d_in], ``encoder.bias`` [d_sae], ``W_dec``
[d_sae, d_in], ``b_dec`` [d_in]. Encoding: top-k of relu((x - b_dec) W_enc + b_enc), so
architecture topk with W_enc = encoder.weight^T, ``apply_b_dec_to_input`` True, no input
normalisation. Transcoders, skip connections and ``groupmax`` are refused (not an SAE of x).
The hookpoint folder gives the layer and site: ``layers.6`` (HF block output) ->
6, hook_resid_post; ``layers.6.mlp`` -> hook_mlp_out; ``layers.6.self_attn`` -> hook_attn_out.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams

from .raw import Loaded, as_int, expect_shape, read_json, read_safetensors, take, to_numpy

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae.safetensors"
_HOOKPOINT = re.compile(r"(?:.*\.)?(?:layers|h|blocks)\.(\d+)(?:\.(mlp|self_attn|attn|attention))?")
_SITES = {None: "hook_resid_post", "mlp": "hook_mlp_out", "self_attn": "hook_attn_out",
          "attn": "hook_attn_out", "attention": "hook_attn_out"}


def folder_of(path: Path) -> Path:
    return path.parent if path.is_file() else path


def hookpoint(name: str) -> tuple[int, str] | None:
    """(layer, hook site) of a sparsify hookpoint folder name, or None."""
    m = _HOOKPOINT.fullmatch(name)
    return (int(m.group(1)), _SITES[m.group(2)]) if m else None


def load(path: Path) -> Loaded:
    folder = folder_of(path)
    cfg_path, w_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise BadInput(f"{cfg_path}: expected a JSON object")
    act = str(cfg.get("activation", "topk")).lower()
    if act != "topk":
        raise BadInput(f"{cfg_path}: unsupported sparsify activation {act!r} (supported: topk)")
    for flag in ("transcode", "skip_connection"):
        if cfg.get(flag):
            raise BadInput(f"{cfg_path}: {flag} is set; only plain sparsify autoencoders are supported")
    k = as_int(cfg.get("k"), cfg_path, "k")
    d_in = as_int(cfg.get("d_in"), cfg_path, "d_in")
    if not k or k <= 0:
        raise BadInput(f"{cfg_path}: a topk SAE needs a positive k in its config")
    if d_in is None or d_in <= 0:
        raise BadInput(f"{cfg_path}: needs a positive d_in")
    n = as_int(cfg.get("num_latents"), cfg_path, "num_latents") or 0
    if n <= 0:
        n = d_in * (as_int(cfg.get("expansion_factor", 32), cfg_path, "expansion_factor") or 0)
    if n <= 0:
        raise BadInput(f"{cfg_path}: needs num_latents or expansion_factor > 0")

    t, sha = read_safetensors(w_path)
    why = f"{cfg_path.name} says d_in={d_in}, num_latents={n}"
    enc = to_numpy(take(t, w_path, "encoder.weight"), w_path, "encoder.weight")
    expect_shape(enc, (n, d_in), w_path, "encoder.weight", why)
    b_enc = to_numpy(take(t, w_path, "encoder.bias"), w_path, "encoder.bias")
    expect_shape(b_enc, (n,), w_path, "encoder.bias", why)
    w_dec = to_numpy(take(t, w_path, "W_dec"), w_path, "W_dec")
    expect_shape(w_dec, (n, d_in), w_path, "W_dec", why)
    b_dec = to_numpy(take(t, w_path, "b_dec"), w_path, "b_dec")
    expect_shape(b_dec, (d_in,), w_path, "b_dec", why)
    hp = hookpoint(folder.name)
    p = SAEParams(w_enc=np.ascontiguousarray(enc.T), b_enc=b_enc, w_dec=w_dec, b_dec=b_dec,
                  architecture="topk", threshold=None, k=k, normalize="none", apply_b_dec_to_input=True)
    return Loaded(params=p, layer=hp[0] if hp else None, fmt="sparsify", weights_path=w_path, sha256=sha,
                  hook_site=hp[1] if hp else "hook_resid_post")
