"""The SAEs a downloaded snapshot folder holds (a Hugging Face repository as downloaded).

Layouts recognised anywhere under the folder (one SAE each):

* SAELens: a folder with ``cfg.json`` + ``sae_weights.safetensors`` (e.g. ``blocks.6.hook_resid_post/``);
* sparsify: a folder with ``cfg.json`` + ``sae.safetensors`` (hookpoint folders ``layers.6/``);
* Gemma Scope: ``layer_N/width_W/average_l0_L/params.npz``;
* dictionary_learning: a folder with ``ae.pt`` + ``config.json``;
* OpenAI: every other ``.pt`` file (``v5_32k_layer_5.pt``, ``6.pt``).

Where the folder holds several Gemma Scope SAEs for one layer (widths, L0s), ``--width W`` and
``--average-l0 L`` (``16k`` or ``width_16k``; ``71`` or ``average_l0_71``) keep the matching
ones; if a layer still has more than one, exit 2 with the choices listed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from saew.errors import BadInput
from saew.sae.saelens import CFG_FILE, WEIGHTS_FILE

from . import sparsify

_GEMMA = {"layer": re.compile(r"layer_(\d+)"), "width": re.compile(r"width_(\w+)"),
          "l0": re.compile(r"average_l0_(\w+)")}


@dataclass(frozen=True)
class Found:
    path: Path
    fmt: str
    layer: int | None = None   # when the path tells (Gemma Scope folders)
    width: str | None = None
    l0: str | None = None


def _gemma_part(f: Path, key: str) -> str | None:
    rx = _GEMMA[key]
    return next((m.group(1) for part in reversed(f.parts) if (m := rx.fullmatch(part))), None)


def find(root: Path, fmt: str = "auto") -> list[Found]:
    """Every SAE under ``root`` (of format ``fmt`` unless 'auto'), in path order."""
    out: list[Found] = []
    for d in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        names = {p.name for p in d.iterdir() if p.is_file()}
        if CFG_FILE in names and WEIGHTS_FILE in names:
            out.append(Found(d, "saelens"))
        elif sparsify.CFG_FILE in names and sparsify.WEIGHTS_FILE in names:
            out.append(Found(d, "sparsify"))
        elif "ae.pt" in names and "config.json" in names:
            out.append(Found(d, "dictionary_learning"))
        elif "params.npz" in names:
            f = d / "params.npz"
            layer = _gemma_part(f, "layer")
            out.append(Found(f, "gemmascope", int(layer) if layer is not None else None,
                             _gemma_part(f, "width"), _gemma_part(f, "l0")))
        else:
            out += [Found(d / n, "openai") for n in sorted(names) if n.endswith(".pt")]
    return [f for f in out if fmt in ("auto", f.fmt)]


def _norm(v: str | None, prefix: str) -> str | None:
    return None if v is None else str(v).removeprefix(prefix)


def choose(root: Path, found: list[Found], width: str | None, average_l0: str | None) -> list[Found]:
    """Keep the Gemma Scope SAEs matching --width / --average-l0; one per layer, else exit 2."""
    w, l0 = _norm(width, "width_"), _norm(average_l0, "average_l0_")
    gem = [f for f in found if f.fmt == "gemmascope"]
    kept = [f for f in gem if (w is None or f.width == w) and (l0 is None or f.l0 == l0)]
    if gem and not kept:
        asked = " ".join(x for x in (f"--width {width}" if width else "",
                                     f"--average-l0 {average_l0}" if average_l0 else "") if x)
        raise BadInput(f"{root}: no SAE matches {asked} (widths: {', '.join(_uniq(f.width for f in gem))}; "
                       f"average L0s: {', '.join(_uniq(f.l0 for f in gem))})")
    by_layer: dict[int | None, list[Found]] = {}
    for f in kept:
        by_layer.setdefault(f.layer, []).append(f)
    for layer, fs in sorted(by_layer.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        if len(fs) > 1:
            opts = ", ".join(f"width {f.width} average_l0 {f.l0}" for f in fs)
            raise BadInput(f"{root}: layer {layer} has {len(fs)} SAEs ({opts}); choose with "
                           f"--width W and/or --average-l0 L")
    return [f for f in found if f.fmt != "gemmascope"] + kept


def _uniq(xs) -> list[str]:
    return sorted({str(x) for x in xs}, key=lambda s: (len(s), s))
