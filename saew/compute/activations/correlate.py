"""``saew correlate``: activation statistics between features of adjacent layers (contract 5).

For adjacent layers l -> l' of a release (consecutive ingested layers that both have
activations), over the same tokens (``token_id`` shared between layers), with x_i the
activation of source feature i and y_j that of destination feature j on a token (the stored
value where it is > 0, else 0 — "0 where inactive"):

* n_src = #tokens with x_i > 0, n_dst = #tokens with y_j > 0, n_both = #tokens with both;
* Pearson over ALL N tokens (N = ``activation_sets.n_tokens``, equal for both layers), from
  the sufficient statistics sx = sum x, sxx = sum x^2, sy, syy, sxy = sum x y
  (Balcells et al. 2024, "Evolution of SAE Features Across Layers in LLMs"):
  r = (N sxy - sx sy) / sqrt((N sxx - sx^2)(N syy - sy^2)), NULL where a variance is 0.

Stored in ``correlations`` (partition (release, src_layer)): for every source feature, the
pairs that co-occur at least once (n_both >= 1), top 16 by pearson, ties broken by dst_feature
ascending (a NULL pearson ranks last).

How: sxy and n_both are the sparse product X^T Y restricted to one source row at a time — a
compiled kernel runs over chunks of source features on every core, walking the tokens where
source feature i is active and the destination features active on each, accumulating into
dense per-thread rows of length d_sae(l'), then keeps the row's top 16 with one stable sort.
No feature x feature matrix exists, and no Python loop runs over features or pairs. A layer's
activations are read, checked and grouped once: the destination of one pair is the source of
the next (its incidence reused when both pairs map tokens to the same rows).
Each layer pair is a unit (``correlate_unit`` through ``--executor``, reading its layers from
the lake; in a worker process the kernel runs on one thread), committed as it is done: a
failure keeps the pairs before it and a re-run does only the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saew.errors import BadInput
from saew.progress import progress

from saew.compute.activations.incidence import Incidence, incidence, token_rows
from saew.compute.options import add_executor_arguments
from saew.storage.reads import Activity, activation_layers, load_activity

TOP_K = 16
LOCAL_WORKERS = 1   # --executor local: pairs in this process (the kernel uses every core)


def _jit():
    """The compiled kernels (``compute/activations/kernels.py``), imported on first use."""
    from saew.compute.activations import kernels

    return {"top_correlations": kernels.top_correlations, "pearson": kernels.pearson}




@dataclass
class Built:
    """A layer's incidence matrix and the token rows it was built on (reused by the next pair
    when its rows are the same: adjacent pairs share a layer)."""
    rows: np.ndarray
    n_rows: int
    inc: Incidence


def _built(act: Activity, rows: np.ndarray, n_rows: int, cached: Built | None) -> Built:
    if cached is not None and cached.n_rows == n_rows and np.array_equal(cached.rows, rows):
        return cached
    return Built(rows, n_rows, incidence(rows, act.feature, act.value, n_rows, act.d_sae))


def correlate_layers(src: Activity, dst: Activity, k: int = TOP_K, src_built: Built | None = None
                     ) -> tuple[dict[str, np.ndarray], Built]:
    """Top-k correlated destination features per source feature (see module docstring).

    Returns columns src_feature, dst_feature, n_src, n_dst, n_both, pearson (NaN = NULL), and
    the destination's incidence for the next pair (``src_built``: this source's, if it was
    built on the same token rows; the same arrays, so the same figures, as building it anew).
    """
    n = src.n_tokens
    (rs, rd), n_rows = token_rows(src.token_id, dst.token_id)
    xs = _built(src, rs, n_rows, src_built).inc
    dst_built = _built(dst, rd, n_rows, None)
    yd = dst_built.inc
    xv = src.value.astype(np.float64)
    yv = dst.value.astype(np.float64)
    sx = np.bincount(src.feature, weights=xv, minlength=src.d_sae)
    sxx = np.bincount(src.feature, weights=xv * xv, minlength=src.d_sae)
    sy = np.bincount(dst.feature, weights=yv, minlength=dst.d_sae)
    syy = np.bincount(dst.feature, weights=yv * yv, minlength=dst.d_sae)
    n_src = np.diff(xs.f_ptr)
    n_dst = np.diff(yd.f_ptr)
    out_j, out_n, out_r = _jit()["top_correlations"](
        xs.f_ptr, xs.f_tok, xs.f_val, yd.t_ptr, yd.t_feat, yd.t_val, src.d_sae, dst.d_sae,
        sx, sxx, sy, syy, float(n), k, int(max(1, min(src.d_sae, 1024))))
    keep = out_j.ravel() >= 0
    src_f = np.repeat(np.arange(src.d_sae, dtype=np.int32), k)[keep]
    dst_f = out_j.ravel()[keep]
    return {"src_feature": src_f, "dst_feature": dst_f,
            "n_src": n_src[src_f].astype(np.int64), "n_dst": n_dst[dst_f].astype(np.int64),
            "n_both": out_n.ravel()[keep], "pearson": out_r.ravel()[keep]}, dst_built


def _check_tokens(act: Activity, release: str, layer: int) -> None:
    where = f"release {release!r} layer {layer}"
    if act.n_tokens is None:
        raise BadInput(f"{where}: no activation_sets row (N, the number of tokens); "
                       f"ingest the activations with `saew ingest activations` or `saew harvest`")
    seen = np.unique(act.token_id).size if act.nnz else 0
    if seen > act.n_tokens:
        raise BadInput(f"{where}: activations cover {seen} tokens but activation_sets says "
                       f"n_tokens = {act.n_tokens}")


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose adjacent layers to correlate")
    add_executor_arguments(p, "layer pairs", LOCAL_WORKERS)


def run(args, ctx) -> str:
    import pyarrow as pa

    from saew.compute.options import executor_from_args
    from saew.compute.units import Units, pair_unit
    from saew.storage.saes import require_release

    lake, release = ctx.lake, args.release
    ex = executor_from_args(args, "cpu", local_workers=LOCAL_WORKERS)
    all_layers = require_release(lake, release)
    have = set(activation_layers(lake, release))
    pairs = [(a, b) for a, b in zip(all_layers, all_layers[1:]) if a in have and b in have]
    if not pairs:
        raise BadInput(f"--release {release!r}: no two adjacent layers with activations "
                       f"(layers {all_layers}, with activations {sorted(have)})")
    units = Units(ctx, [pair_unit(*p) for p in pairs])
    todo = [p for p in pairs if pair_unit(*p) in units.todo]
    reuse = ex.in_process(len(todo))   # consecutive pairs in one process share a layer
    jobs = ((str(lake.home), release, int(la), int(lb), ctx.run_id if reuse else None)
            for la, lb in todo)
    rows = 0
    try:
        for (la, lb), cols in progress(zip(todo, ex.map(correlate_unit, jobs, len(todo))),
                                       total=len(todo), desc="correlate", unit="pair"):
            r = cols.pop("pearson")
            lake.write("correlations", {**cols, "dst_layer": np.full(r.size, lb, np.int32),
                                        "pearson": pa.array(r, mask=np.isnan(r), type=pa.float64())},
                       release=release, src_layer=int(la))
            units.commit(pair_unit(la, lb))
            rows += int(r.size)
    finally:
        _LAST.clear()
    return (f"correlate: release {release}: {rows} pairs over {len(todo)} layer pair(s)"
            + (f"\n{units.note()}" if units.skipped else ""))


# the destination layer of this process's last unit, (run id, release, layer) -> (Activity,
# Built): the source of the next pair when the units run one after another in one process
_LAST: dict[tuple, tuple[Activity, Built]] = {}


def correlate_unit(home: str, release: str, la: int, lb: int, reuse: str | None = None
                   ) -> dict[str, np.ndarray]:
    """One unit of ``saew correlate`` (in this process, a worker process or a Ray task): the
    columns of ``correlate_layers`` for the layer pair la -> lb of the lake at ``home``, each
    layer's activations read and checked. ``reuse`` (the run id, when the units run one after
    another in this process): keep this pair's destination for the next pair, whose source it
    is (the same arrays, so the same figures, as reading it again)."""
    from saew.storage.lake import Lake

    lake = Lake(home)
    src, src_built = _LAST.pop((reuse, release, la), (None, None)) if reuse else (None, None)
    _LAST.clear()
    if src is None:
        src = load_activity(lake, release, la)
        _check_tokens(src, release, la)
    dst = load_activity(lake, release, lb)
    _check_tokens(dst, release, lb)
    if src.n_tokens != dst.n_tokens:
        raise BadInput(f"release {release!r}: activation_sets n_tokens differ between layer {la} "
                       f"({src.n_tokens}) and layer {lb} ({dst.n_tokens}); correlations need "
                       f"the same tokens at both layers")
    cols, dst_built = correlate_layers(src, dst, src_built=src_built)
    if reuse:
        _LAST[(reuse, release, lb)] = (dst, dst_built)
    return cols
