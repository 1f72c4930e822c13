"""Write an SAE as a SAELens v6 folder: ``cfg.json`` + ``sae_weights.safetensors``.

Layout (what ``sae_lens.SAE.load_from_disk(folder)`` reads):

* ``cfg.json``: ``architecture`` (``standard`` for relu, ``jumprelu``, ``topk``), ``d_in``,
  ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``, ``normalize_activations``,
  ``reshape_activations``, ``k`` and ``rescale_acts_by_decoder_norm`` (topk), and
  ``metadata`` with ``model_name``, ``hook_name``, ``hook_head_index`` and any extras;
* ``sae_weights.safetensors``: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc``
  [d_sae], ``b_dec`` [d_in] and, for jumprelu, ``threshold`` [d_sae] (float32).

Folders are written atomically: into a temporary sibling, then renamed over the target.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from saew.sae.params import SAEParams

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_ARCH = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk"}


def saelens_config(p: SAEParams, metadata: dict | None = None) -> dict:
    """The ``cfg.json`` dict of a SAELens v6 SAE with these weights."""
    if p.architecture not in SAELENS_ARCH:
        raise ValueError(f"cannot write a {p.architecture!r} SAE as a SAELens folder")
    cfg: dict = {
        "architecture": SAELENS_ARCH[p.architecture], "d_in": p.d_in, "d_sae": p.d_sae,
        "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": bool(p.apply_b_dec_to_input),
        "normalize_activations": p.normalize, "reshape_activations": "none",
    }
    if p.architecture == "topk":
        cfg["k"] = int(p.k)
        cfg["rescale_acts_by_decoder_norm"] = False
    cfg["metadata"] = {"model_name": p.model, "hook_name": p.hook, "hook_head_index": None,
                       **(metadata or {})}
    return cfg


def saelens_tensors(p: SAEParams) -> dict[str, np.ndarray]:
    """The safetensors state dict (SAELens names and orientation, float32, contiguous)."""
    out = {"W_enc": p.w_enc, "W_dec": p.w_dec, "b_enc": p.b_enc, "b_dec": p.b_dec}
    if p.architecture == "jumprelu":
        out["threshold"] = p.threshold
    return {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in out.items()}


def write_folder(dest: Path, p: SAEParams, metadata: dict | None = None) -> Path:
    """Write ``p`` as a SAELens folder at ``dest`` (replacing it atomically); return ``dest``."""
    from safetensors.numpy import save_file

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(saelens_tensors(p), str(tmp / WEIGHTS_FILE))
        (tmp / CFG_FILE).write_text(json.dumps(saelens_config(p, metadata), indent=2))
        replace_dir(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def replace_dir(src: Path, dest: Path) -> None:
    """Move folder ``src`` to ``dest``, replacing an existing ``dest`` (renames only)."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
    os.replace(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
