"""OpenAI ``sparse_autoencoder`` checkpoints (``N.pt``, e.g. GPT-2 small v5 32k).

State dict: ``encoder.weight`` [n, d], ``decoder.weight`` [d, n], ``pre_bias`` [d] (= b_dec),
``latent_bias`` [n] (= b_enc), stats buffers (``stats_last_nonzero``, ...), ``activation``
("TopK" with ``activation_state_dict = {"k": k}``, or "ReLU"). Inputs are layer-normalised,
so ``normalize = 'layer_norm'``. W_enc = encoder.weight^T, W_dec = decoder.weight^T.
The layer comes from the file name (``6.pt``, ``layer6.pt``, ``v5_32k_layer_5.pt``); the hook from the folder name
(``resid_post_mlp`` -> hook_resid_post, ``resid_delta_mlp`` -> hook_mlp_out, ...).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams

from saew.ingest.formats.raw import Loaded, as_int, expect_shape, read_bytes, take, to_numpy, torch_state

# ``6.pt``, ``layer6.pt``, and names with a ``layer_N`` tail such as ``v5_32k_layer_5.pt``
# (the file names of the GPT-2 v5 release in SAELens's registry and on Hugging Face)
_NAME = re.compile(r"(?:layer[_-]?)?(\d+)\.pt|.*[_-]layer[_-]?(\d+)\.pt", re.IGNORECASE)
_SITES = {"resid_post_mlp": "hook_resid_post", "resid_post_attn": "hook_resid_mid",
          "resid_delta_mlp": "hook_mlp_out", "resid_delta_attn": "hook_attn_out"}


def layer_of_name(name: str) -> int | None:
    """The layer an OpenAI checkpoint's file name gives, or None."""
    m = _NAME.fullmatch(name)
    return int(m.group(1) or m.group(2)) if m else None


def pt_file(path: Path) -> Path:
    if path.is_dir():
        pts = sorted(path.glob("*.pt"))
        if len(pts) != 1:
            raise BadInput(f"{path}: expected one .pt file in the folder, found {len(pts)}")
        return pts[0]
    return path


def load(path: Path) -> Loaded:
    f = pt_file(path)
    buf, sha = read_bytes(f)
    sd = torch_state(buf, f)
    del buf
    enc = to_numpy(take(sd, f, "encoder.weight"), f, "encoder.weight")
    if enc.ndim != 2:
        raise BadInput(f"{f}: encoder.weight has shape {enc.shape}, expected [n_latents, d_model]")
    n, d = enc.shape
    dec = to_numpy(take(sd, f, "decoder.weight"), f, "decoder.weight")
    why = f"encoder.weight is [{n}, {d}]"
    expect_shape(dec, (d, n), f, "decoder.weight", why)
    pre_bias = to_numpy(take(sd, f, "pre_bias"), f, "pre_bias")
    latent_bias = to_numpy(take(sd, f, "latent_bias"), f, "latent_bias")
    expect_shape(pre_bias, (d,), f, "pre_bias", why)
    expect_shape(latent_bias, (n,), f, "latent_bias", why)
    act = sd.get("activation", "TopK")
    state = sd.get("activation_state_dict") or {}
    if act == "TopK":
        if not isinstance(state, dict) or "k" not in state:
            raise BadInput(f"{f}: a TopK checkpoint needs activation_state_dict['k']")
        arch, k = "topk", as_int(state["k"], f, "activation_state_dict['k']")
    elif act == "ReLU":
        arch, k = "relu", None
    else:
        raise BadInput(f"{f}: unsupported activation {act!r} (expected 'TopK' or 'ReLU')")
    site = next((s for part in f.parts for key, s in _SITES.items() if key in part), "hook_resid_post")
    p = SAEParams(w_enc=enc.T, b_enc=latent_bias, w_dec=np.ascontiguousarray(dec.T), b_dec=pre_bias,
                  architecture=arch, threshold=None, k=k, normalize="layer_norm",
                  apply_b_dec_to_input=True)
    return Loaded(params=p, layer=layer_of_name(f.name), fmt="openai", weights_path=f,
                  sha256=sha, hook_site=site)
