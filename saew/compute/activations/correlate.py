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
failure keeps the pairs before it and a re-run does only the rest. Under Ray the pairs run as
``--workers`` contiguous chains (``Executor.map(chained=True)``), each in one task, so there
too a pair's destination is reused as the next pair's source.

Token shards (``saew harvest --shard-tokens``): both layers are read block by block over the
token ranges of the source layer's shards (``storage.reads.token_blocks``). Every statistic is
a sum over tokens, so the blocks' sums are added: the per-feature sums and the running
(n_both, sxy) of every co-occurring pair (``Pairs``: CSR rows in ranges of source features,
``kernels.carry_row``) continue from the earlier blocks with the same float additions in the
same order as one unsharded pass (tokens ascending), and the last block's kernel starts from
them and selects the top 16. The result is bit-for-bit the unsharded one. Memory holds one
block, the running pairs (16 bytes each: at most d_sae(l) x d_sae(l'), in practice the pairs
that ever co-occur, which grow with the corpus until they saturate) and one range's rebuilt
copy, never a whole layer; time per block is its pair visits plus one pass over the pairs so far.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from saew.errors import BadInput
from saew.progress import progress

from saew.compute.activations.incidence import Incidence, incidence, token_rows
from saew.compute.options import add_executor_arguments
from saew.storage.reads import Activity, activation_layers, load_activity, token_blocks

TOP_K = 16
LOCAL_WORKERS = 1   # --executor local: pairs in this process (the kernel uses every core)


def _kernels():
    """The compiled kernels (``compute/activations/kernels.py``), imported on first use."""
    from saew.compute.activations import kernels

    return kernels


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


@dataclass
class Sums:
    """A layer's per-feature running sums over the token blocks read so far: cnt = #tokens
    with x > 0, s = sum x, ss = sum x^2, added in token-major order (``kernels.feature_sums``)."""
    cnt: np.ndarray
    s: np.ndarray
    ss: np.ndarray

    @classmethod
    def zeros(cls, d: int) -> "Sums":
        return cls(np.zeros(d, np.int64), np.zeros(d, np.float64), np.zeros(d, np.float64))

    def add(self, inc: Incidence) -> None:
        _kernels().feature_sums(inc.t_feat, inc.t_val, self.cnt, self.s, self.ss)


class Pairs:
    """Running (n_both, sxy) of every co-occurring pair (i, j) over the blocks read so far, kept
    in ranges of the source feature i (``incidence.row_ranges``), each a CSR (ptr, j int32,
    n_both int32, sxy float64) with j ascending per row (``kernels.cross_rows``). One more block
    rebuilds one range at a time, so memory holds the pairs and one range's new copy (16 bytes a
    pair), not two copies of every pair; the time per block is its pair visits plus one pass over
    the pairs so far (merging the row's old j with the block's new ones), never a sort of every
    row."""

    def __init__(self, d_src: int):
        from saew.compute.activations.incidence import row_ranges

        self.bounds = row_ranges(d_src)
        self.parts = [(np.zeros(int(hi - lo) + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                       np.zeros(0, np.float64)) for lo, hi in zip(self.bounds[:-1], self.bounds[1:])]

    @classmethod
    def empty(cls, d_src: int) -> "Pairs":
        return cls(d_src)

    def ranges(self) -> list[tuple[int, int]]:
        """The source-feature ranges [lo, hi), one per part."""
        return [(int(lo), int(hi)) for lo, hi in zip(self.bounds[:-1], self.bounds[1:])]

    def add(self, xs: Incidence, yd: Incidence) -> "Pairs":
        """The sums after one more block (xs feature-major, yd token-major, same token rows),
        updated range by range in place."""
        k = _kernels()
        for r, (lo, hi) in enumerate(self.ranges()):
            p_ptr, p_j, p_n, p_xy = self.parts[r]
            f_ptr, d = xs.f_ptr[lo:hi + 1], hi - lo
            nc = _n_chunks(d)
            sizes = k.cross_row_sizes(f_ptr, xs.f_tok, yd.t_ptr, yd.t_feat, d, yd.d, p_ptr, p_j, nc)
            ptr = np.zeros(d + 1, np.int64)
            np.cumsum(sizes, out=ptr[1:])
            nnz = int(ptr[-1])
            out = (ptr, np.empty(nnz, np.int32), np.empty(nnz, np.int32), np.empty(nnz, np.float64))
            k.cross_rows(f_ptr, xs.f_tok, xs.f_val, yd.t_ptr, yd.t_feat, yd.t_val, d, yd.d,
                         p_ptr, p_j, p_n, p_xy, nc, *out)
            self.parts[r] = out
            del p_ptr, p_j, p_n, p_xy
        return self


def _n_chunks(d: int) -> int:
    return int(max(1, min(d, 1024)))


def _top(xs: Incidence, yd: Incidence, sx: Sums, sy: Sums, n: int, k: int, prev: Pairs
         ) -> dict[str, np.ndarray]:
    """The stored columns from the last block and the sums of every block (see module docstring),
    range by range of source features (each range's running pairs released once used)."""
    kern = _kernels()
    outs = []
    for r, (lo, hi) in enumerate(prev.ranges()):
        p_ptr, p_j, p_n, p_xy = prev.parts[r]
        outs.append(kern.top_correlations(
            xs.f_ptr[lo:hi + 1], xs.f_tok, xs.f_val, yd.t_ptr, yd.t_feat, yd.t_val, hi - lo, yd.d,
            sx.s[lo:hi], sx.ss[lo:hi], sy.s, sy.ss, float(n), k, _n_chunks(hi - lo), p_ptr, p_j, p_n, p_xy))
        prev.parts[r] = None
        del p_ptr, p_j, p_n, p_xy
    out_j, out_n, out_r = (np.concatenate([o[i] for o in outs]) for i in range(3))
    keep = out_j.ravel() >= 0
    src_f = np.repeat(np.arange(xs.d, dtype=np.int32), k)[keep]
    dst_f = out_j.ravel()[keep]
    return {"src_feature": src_f, "dst_feature": dst_f,
            "n_src": sx.cnt[src_f].astype(np.int64), "n_dst": sy.cnt[dst_f].astype(np.int64),
            "n_both": out_n.ravel()[keep], "pearson": out_r.ravel()[keep]}


def correlate_blocks(blocks: list, k: int = TOP_K, src_built: Built | None = None
                     ) -> tuple[dict[str, np.ndarray], Built | None]:
    """Top-k correlated destination features per source feature over token blocks.

    ``blocks``: one loader per block, each returning (src Activity, dst Activity) of one token
    range; the ranges are disjoint and in ascending token order. Every sum (sx, sxx, n_src per
    source feature, the same per destination feature, sxy and n_both per pair) continues from
    the earlier blocks with the additions one pass over all the tokens makes, in the same order,
    so the result does not depend on how the tokens are sharded (bit for bit). Memory: one
    block's incidences and the running pairs. Returns columns src_feature, dst_feature, n_src,
    n_dst, n_both, pearson (NaN = NULL), and, for a single block, the destination's incidence
    for the next pair (``src_built``: this source's, if built on the same token rows).
    """
    if not blocks:
        raise ValueError("correlate_blocks: no blocks")
    for b, load in enumerate(blocks):
        src, dst = load()
        if b == 0:
            n = src.n_tokens
            if n is not None and n >= 2**31:
                raise ValueError("2^31 or more tokens: n_both would overflow its int32 column")
            sx, sy, prev = Sums.zeros(src.d_sae), Sums.zeros(dst.d_sae), Pairs.empty(src.d_sae)
        (rs, rd), n_rows = token_rows(src.token_id, dst.token_id)
        xs = _built(src, rs, n_rows, src_built if len(blocks) == 1 else None).inc
        dst_built = _built(dst, rd, n_rows, None)
        del src, dst, rs, rd
        sx.add(xs)
        sy.add(dst_built.inc)
        if b < len(blocks) - 1:
            prev = prev.add(xs, dst_built.inc)
            del xs, dst_built
    return _top(xs, dst_built.inc, sx, sy, n, k, prev), (dst_built if len(blocks) == 1 else None)


def correlate_layers(src: Activity, dst: Activity, k: int = TOP_K, src_built: Built | None = None
                     ) -> tuple[dict[str, np.ndarray], Built]:
    """Top-k correlated destination features per source feature of two layers read whole
    (one block of ``correlate_blocks``)."""
    return correlate_blocks([lambda: (src, dst)], k, src_built)


def _check_tokens(act: Activity, release: str, layer: int, seen: int = 0) -> int:
    """Tokens with activity so far (``seen`` in earlier blocks plus this block's); BadInput if
    the layer has no N or more active tokens than N."""
    where = f"release {release!r} layer {layer}"
    if act.n_tokens is None:
        raise BadInput(f"{where}: no activation_sets row (N, the number of tokens); "
                       f"ingest the activations with `saew ingest activations` or `saew harvest`")
    seen += np.unique(act.token_id).size if act.nnz else 0
    if seen > act.n_tokens:
        raise BadInput(f"{where}: activations cover {seen} tokens but activation_sets says "
                       f"n_tokens = {act.n_tokens}")
    return seen


def correlate_pair(lake, release: str, la: int, lb: int, k: int = TOP_K,
                   cached: tuple[Activity, Built] | None = None
                   ) -> tuple[dict[str, np.ndarray], tuple[Activity, Built] | None]:
    """The correlations of layer pair la -> lb, both layers read block by block over the token
    ranges of la's shards (``storage.reads.token_blocks``) and checked against activation_sets.
    ``cached``: la's checked Activity and incidence from the previous pair (when la is read in
    one block); returns lb's for the next pair when lb was read in one block."""
    blocks = token_blocks(lake, release, la)
    one = len(blocks) == 1
    seen = {la: 0, lb: 0}
    last: dict[str, Activity] = {}

    def loader(lo_hi):
        def load() -> tuple[Activity, Activity]:
            if one and cached is not None:
                src = cached[0]
            else:
                src = load_activity(lake, release, la, tokens=lo_hi)
                seen[la] = _check_tokens(src, release, la, seen[la])
            dst = load_activity(lake, release, lb, tokens=lo_hi)
            seen[lb] = _check_tokens(dst, release, lb, seen[lb])
            if src.n_tokens != dst.n_tokens:
                raise BadInput(f"release {release!r}: activation_sets n_tokens differ between layer "
                               f"{la} ({src.n_tokens}) and layer {lb} ({dst.n_tokens}); correlations "
                               f"need the same tokens at both layers")
            last["dst"] = dst
            return src, dst
        return load

    cols, dst_built = correlate_blocks([loader(b) for b in blocks], k,
                                       cached[1] if one and cached is not None else None)
    return cols, (None if dst_built is None else (last["dst"], dst_built))


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose adjacent layers to correlate")
    add_executor_arguments(p, "layer pairs", LOCAL_WORKERS)


def run(args, ctx) -> str:
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
    # consecutive pairs in one process (this one, or one Ray chain task) share a layer
    reuse = ex.chains_share_process(len(todo))
    jobs = ((str(lake.home), release, int(la), int(lb), ctx.run_id if reuse else None)
            for la, lb in todo)
    try:
        rows = sum(progress((n for _, n in units.map_commit(ex, correlate_unit, jobs,
                                                           partial(write_pairs, release=release),
                                                           chained=True)),
                            total=len(todo), desc="correlate", unit="pair"))
    finally:
        _LAST.clear()
    return (f"correlate: release {release}: {rows} pairs over {len(todo)} layer pair(s)"
            + (f"\n{units.note()}" if units.skipped else ""))


# the destination layer of this process's last unit, (run id, release, layer) -> (Activity,
# Built): the source of the next pair when the units run one after another in one process
_LAST: dict[tuple, tuple[Activity, Built]] = {}


def write_pairs(lake, unit: str, cols: dict, release: str) -> int:
    """A unit's ``correlations`` rows (the partition of its source layer); their number."""
    import pyarrow as pa

    from saew.compute.units import unit_layers

    la, lb = unit_layers(unit)
    cols = dict(cols)
    r = cols.pop("pearson")
    lake.write("correlations", {**cols, "dst_layer": np.full(r.size, lb, np.int32),
                                "pearson": pa.array(r, mask=np.isnan(r), type=pa.float64())},
               release=release, src_layer=int(la))
    return int(r.size)


def correlate_unit(home: str, release: str, la: int, lb: int, reuse: str | None = None
                   ) -> dict[str, np.ndarray]:
    """One unit of ``saew correlate`` (in this process, a worker process or a Ray task): the
    columns of ``correlate_pair`` for the layer pair la -> lb of the lake at ``home``.
    ``reuse`` (the run id, when the units run one after another in this process): keep this
    pair's destination for the next pair, whose source it is (the same arrays, so the same
    figures, as reading it again)."""
    from saew.storage.lake import Lake

    cached = _LAST.pop((reuse, release, la), None) if reuse else None
    _LAST.clear()
    cols, nxt = correlate_pair(Lake(home), release, la, lb, cached=cached)
    if reuse and nxt is not None:
        _LAST[(reuse, release, lb)] = nxt
    return cols
