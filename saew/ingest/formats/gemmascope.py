"""Gemma Scope ``params.npz`` (``<release>/layer_N/width_16k/average_l0_71/params.npz``).

Arrays: W_enc [d, n], W_dec [n, d], b_enc [n], b_dec [d], threshold [n] (SAELens orientation).
JumpReLU, ``apply_b_dec_to_input`` False. The layer comes from the ``layer_N`` folder; the
model and hook from a ``gemma-scope-2b-pt-res``-style folder name when present.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from saew.errors import BadInput
from saew.sae.params import SAEParams

from saew.ingest.formats.raw import Loaded, expect_shape, npz_arrays, take, to_numpy

_LAYER = re.compile(r"layer_(\d+)")
_REPO = re.compile(r"gemma-scope-(\d+b)-(pt|it)-(res|mlp|att)")
_SITES = {"res": "hook_resid_post", "mlp": "hook_mlp_out", "att": "attn.hook_z"}


def npz_file(path: Path) -> Path:
    return path / "params.npz" if path.is_dir() else path


def load(path: Path) -> Loaded:
    f = npz_file(path)
    z, sha = npz_arrays(f)
    w_enc = to_numpy(take(z, f, "W_enc", "w_enc"), f, "W_enc")
    w_dec = to_numpy(take(z, f, "W_dec", "w_dec"), f, "W_dec")
    if w_dec.ndim != 2:
        raise BadInput(f"{f}: W_dec has shape {w_dec.shape}, expected [d_sae, d_in]")
    n, d = w_dec.shape
    expect_shape(w_enc, (d, n), f, "W_enc", f"W_dec is [{n}, {d}]")
    p = SAEParams(w_enc=w_enc, b_enc=to_numpy(take(z, f, "b_enc"), f, "b_enc"), w_dec=w_dec,
                  b_dec=to_numpy(take(z, f, "b_dec"), f, "b_dec"), architecture="jumprelu",
                  threshold=to_numpy(take(z, f, "threshold"), f, "threshold"), k=None,
                  normalize="none", apply_b_dec_to_input=False)
    layer = next((int(m.group(1)) for part in reversed(f.parts) if (m := _LAYER.fullmatch(part))), None)
    repo = next((m for part in f.parts if (m := _REPO.match(part))), None)
    site = _SITES[repo.group(3)] if repo else "hook_resid_post"
    if repo:
        p = replace(p, model=f"gemma-2-{repo.group(1)}" + ("-it" if repo.group(2) == "it" else ""))
    return Loaded(params=p, layer=layer, fmt="gemmascope", weights_path=f, sha256=sha, hook_site=site)
