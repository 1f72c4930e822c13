"""``saew flow``: each residual feature's predecessors by decoder cosine, across modules (data-free).

Feature Flow (Laptev, Balagansky, Aksenov, Gavrilov 2025): a feature of the residual stream
after block l' can come from the residual stream before the block (the residual SAE of the
previous layer l), or be written by the block's MLP or attention (the ``mlp_out`` /
``attn_out`` SAEs of layer l', sibling releases ``R.mlp_out`` / ``R.attn_out``, contract 6).
For every feature j of residual layer l' (each ingested layer of R but the first; l is the
layer before it) and every module M present at l' (``resid`` = R at l, ``mlp_out``,
``attn_out``), the k source features of largest decoder cosine

    cos(j, i) = <w_dec[j], w_dec_M[i]> / (||w_dec[j]|| ||w_dec_M[i]||)

are stored in ``flow_links`` (module, rank 1 = largest cosine, cosine), one partition per
destination layer. The origin of a feature (the module of its best predecessor when that
cosine clears a threshold, else "nowhere") and its shares per layer are dbt marts
(``fct_feature_origin``, ``fct_origin_by_layer``; thresholds are dbt vars). Computed with
float32 matrix products in blocks of destination rows, ``torch.topk`` per block
(``compute.flow.links``, on ``--device``); each layer's decoder is read once (the destination
of one pair is the residual source of the next). Each destination layer is one unit of work
(``pair=l-l'``, committed as it finishes): a re-run after a failure does only the missing ones.
"""
from __future__ import annotations

import numpy as np

from saew.compute.flow.links import top_predecessors
from saew.compute.options import add_device_argument, resolve_device
from saew.compute.units import Units, pair_unit
from saew.errors import BadInput
from saew.storage.names import FLOW_MODULES, MODULE_POINTS, module_release
from saew.storage.saes import layers as sae_layers
from saew.storage.saes import load_decoder, require_release

DEFAULT_TOP_K = 5


def add_arguments(p) -> None:
    p.add_argument("--release", required=True,
                   help="release of the residual SAEs; its module SAEs are the sibling releases "
                        "R.mlp_out and R.attn_out (saew train --hooks resid_post,mlp_out,attn_out)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                   help=f"predecessors kept per feature and module (default {DEFAULT_TOP_K})")
    add_device_argument(p)


def plan(lake, release: str) -> tuple[list[tuple[int, int]], dict[str, set[int]]]:
    """The residual layer pairs (l, l') of ``release`` and the layers of each module release;
    BadInput for a release with fewer than two residual layers, without module SAEs, or whose
    module SAEs read another width."""
    ls = require_release(lake, release)
    mods = {m: set(sae_layers(lake, module_release(release, m))) for m in MODULE_POINTS}
    if not any(mods.values()):
        raise BadInput(f"--release {release!r}: no module SAEs (releases "
                       f"{', '.join(module_release(release, m) for m in MODULE_POINTS)} are empty); "
                       f"train them with saew train --release {release} --hooks "
                       f"resid_post,{','.join(MODULE_POINTS)}")
    if len(ls) < 2:
        raise BadInput(f"--release {release!r}: only layer {ls[0]} is ingested; flow needs two "
                       f"residual layers")
    widths = lake.query("SELECT release, min(d_in) AS lo, max(d_in) AS hi FROM saes WHERE "
                        "list_contains(?, release) GROUP BY release ORDER BY release",
                        [[release, *(module_release(release, m) for m in MODULE_POINTS)]]).to_pylist()
    if len({w["lo"] for w in widths} | {w["hi"] for w in widths}) > 1:
        raise BadInput(f"--release {release!r}: its module SAEs read another width ("
                       + ", ".join(f"{w['release']}: d_in {w['lo']}" for w in widths) + ")")
    return list(zip(ls[:-1], ls[1:])), mods


def flow_layer(dst: np.ndarray, sources: dict[str, np.ndarray], k: int, device: str = "cpu"
               ) -> dict[str, np.ndarray]:
    """flow_links columns of one destination layer (without release and dst_layer): for every
    destination feature and module of ``sources``, its k best predecessors (rank 1 first)."""
    cols: dict[str, list[np.ndarray]] = {c: [] for c in
                                         ("dst_feature", "module", "rank", "src_feature", "cosine")}
    n = dst.shape[0]
    for m, src in sources.items():
        idx, cos = top_predecessors(dst, src, k, device=device)
        kk = idx.shape[1]
        cols["dst_feature"].append(np.repeat(np.arange(n, dtype=np.int32), kk))
        cols["module"].append(np.full(n * kk, FLOW_MODULES.index(m), np.int8))
        cols["rank"].append(np.tile(np.arange(1, kk + 1, dtype=np.int32), n))
        cols["src_feature"].append(idx.reshape(-1))
        cols["cosine"].append(cos.reshape(-1).astype(np.float64))
    return {c: np.concatenate(v) if v else np.zeros(0) for c, v in cols.items()}


def run(args, ctx) -> str:
    import pyarrow as pa
    import torch

    from saew.progress import progress

    release = args.release
    if args.top_k < 1:
        raise BadInput(f"--top-k {args.top_k}: must be at least 1")
    pairs, mods = plan(ctx.lake, release)
    device = resolve_device(getattr(args, "device", "cpu") or "cpu")
    torch.set_num_threads(2)
    work = Units(ctx, [pair_unit(l, l2) for l, l2 in pairs])   # one unit per destination layer
    lines = [f"flow of {release!r}: top {args.top_k} predecessors per feature and module; "
             f"mean best cosine per destination layer:",
             f"  {'layer':>5}  {'features':>8}  " + "  ".join(f"{m:>8}" for m in FLOW_MODULES)]
    prev: tuple[int, np.ndarray] | None = None
    todo = [(l, l2) for l, l2 in pairs if pair_unit(l, l2) in work.todo]
    for l, l2 in progress(todo, total=len(todo), desc="flow", unit="layer"):
        src = prev[1] if prev is not None and prev[0] == l else load_decoder(ctx.lake, release, l)
        dst = load_decoder(ctx.lake, release, l2)
        sources = {"resid": src}
        for m in MODULE_POINTS:
            if l2 in mods[m]:
                sources[m] = load_decoder(ctx.lake, module_release(release, m), l2)
        cols = flow_layer(dst, sources, args.top_k, device)
        names = np.asarray(FLOW_MODULES, dtype=object)[cols["module"]]
        src_layer = np.where(cols["module"] == 0, l, l2).astype(np.int32)
        src_release = np.asarray([module_release(release, m) if m != "resid" else release
                                  for m in FLOW_MODULES], dtype=object)[cols["module"]]
        ctx.lake.write("flow_links", {
            "dst_feature": cols["dst_feature"], "src_release": pa.array(src_release, pa.string()),
            "src_layer": src_layer, "src_feature": cols["src_feature"],
            "module": pa.array(names, pa.string()), "rank": cols["rank"], "cosine": cols["cosine"],
        }, release=release, dst_layer=int(l2))
        work.commit(pair_unit(l, l2))
        best = [cols["cosine"][(cols["module"] == i) & (cols["rank"] == 1)] for i in range(len(FLOW_MODULES))]
        lines.append(f"  {l2:>5}  {dst.shape[0]:>8}  "
                     + "  ".join(f"{b.mean():8.3f}" if b.size else f"{'-':>8}" for b in best))
        prev = (l2, dst)
    if work.note():
        lines.append(work.note())
    missing = [f"{m} at layer{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))}"
               for m in MODULE_POINTS if (gone := [l2 for _, l2 in pairs if l2 not in mods[m]])]
    if missing:
        lines.append(f"  no module SAE (those predecessors skipped): {'; '.join(missing)}")
    return "\n".join(lines)
