"""``saew coactivation``: co-activation counts n_ab per layer (contract 5, Co-activation).

Feature f is *active* on a token when its activation value is > 0. For features a < b,
n_ab = #tokens on which both are active, i.e. the strict upper triangle of B^T B where
B [tokens x features] is the 0/1 activity matrix. Only pairs with n_ab > 0 are written to
``coactivations`` (one partition per (release, layer)), with n_a and n_b, the tokens on which
each of the two is active (n_f as ``int_feature_activity`` counts it), so the mart
``fct_coactivation_pairs`` needs no join of its tens of millions of pairs.

How: the activations of one layer are grouped twice by counting sorts (token-major B with
ascending features per token, and feature-major B^T with ascending tokens per feature), then
a compiled sparse-times-sparse kernel (Gustavson's row-by-row SpGEMM, upper triangle only)
runs over chunks of features on every core: for feature a it walks the tokens where a is
active and, for each, the features b > a active on that token, counting into a dense
accumulator of length d_sae that is reset after the row. A symbolic pass sizes every output
row first, so the result is written straight into its final arrays (no feature x feature
matrix, dense or sparse, ever exists beyond one row per thread, and there is no Python loop
over features or pairs).

A layer harvested in token shards is counted shard by shard (``storage.reads.token_blocks``):
n_ab is a sum over tokens, so the counts of the shards are added pair by pair (a linear merge
of two (a, b)-sorted lists, ``kernels.merge_counts``) and equal one count over the whole layer
exactly. The running total is kept in ``incidence.RANGES`` ranges of feature a (``RangedCounts``), each
merged with its part of the next shard on its own, so memory holds one shard's activations and
pairs, the pairs found so far and one range's merged copy (not two copies of every pair); the
time per shard is one linear merge, O(pairs so far + the shard's pairs), never a rebuild.

The activations are read by ``storage.reads.load_activity``; the incidence matrices are built
by ``compute.activations.incidence``.
Each layer is a unit (``coactivation_unit`` through ``--executor``, reading its layer from
the lake; in a worker process the kernels run on one thread), committed as it is done: a failure keeps the layers before it and a
re-run does only the rest.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from saew.compute.activations.incidence import Incidence, incidence, row_ranges, token_rows
from saew.compute.options import add_executor_arguments
from saew.errors import BadInput
from saew.progress import progress
from saew.storage.reads import Activity, activation_layers, load_activity, token_blocks

LOCAL_WORKERS = 1   # --executor local: layers in this process (the kernels use every core)


# ---------------------------------------------------------------------------- kernels
def _jit():
    """The compiled kernels (``compute/activations/kernels.py``), imported on first use."""
    from saew.compute.activations import kernels

    return {"pair_row_sizes": kernels.pair_row_sizes, "pair_rows": kernels.pair_rows,
            "merge_counts": kernels.merge_counts}


def _n_chunks(d: int) -> int:
    return int(max(1, min(d, 1024)))


def pair_counts(inc: Incidence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_ab for every pair a < b with n_ab > 0: (feature_a int32, feature_b int32, n_ab int64).

    n_ab = sum_t B[t, a] B[t, b] (the strict upper triangle of B^T B), rows ordered by
    (a, b). Contract 5, Co-activation.
    """
    if inc.n_rows >= 2**31:
        raise ValueError("more than 2^31 tokens in one layer: n_ab would overflow the int32 accumulator")
    k = _jit()
    nc = _n_chunks(inc.d)
    sizes = k["pair_row_sizes"](inc.t_ptr, inc.t_feat, inc.f_ptr, inc.f_tok, inc.d, nc)
    offsets = np.zeros(inc.d + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    nnz = int(offsets[-1])
    out_b = np.empty(nnz, np.int32)
    out_n = np.empty(nnz, np.int64)
    k["pair_rows"](inc.t_ptr, inc.t_feat, inc.f_ptr, inc.f_tok, inc.d, nc, offsets, out_b, out_n)
    out_a = np.repeat(np.arange(inc.d, dtype=np.int32), sizes)
    return out_a, out_b, out_n


def coactivation_counts(act: Activity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-activation pairs of one layer's activity (see ``pair_counts``)."""
    (rows,), n_rows = token_rows(act.token_id)
    inc = incidence(rows, act.feature, act.value, n_rows, act.d_sae)
    return pair_counts(inc)


def add_counts(total: tuple[np.ndarray, ...] | None, part: tuple[np.ndarray, ...]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_ab of the union of two disjoint token sets: the pairs of both (each sorted by (a, b)),
    n_ab added where a pair is in both. Integer counts, so the sum over the token shards of a
    layer is exactly the count over the whole layer, in any order (associative)."""
    if total is None:
        return part
    return _jit()["merge_counts"](*total, *part)


class RangedCounts:
    """Running n_ab of the pairs (a, b) found so far, kept as one (a, b)-sorted list per range
    of a (``row_ranges``): ``add`` merges a shard's pairs range by range (``add_counts``), so
    the old and the merged copy of only one range exist at a time."""

    def __init__(self, d: int):
        self.bounds = row_ranges(d)
        self.parts: list[tuple[np.ndarray, ...] | None] = [None] * (len(self.bounds) - 1)

    def add(self, part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        cuts = np.searchsorted(part[0], self.bounds)
        for r in range(len(self.parts)):
            lo, hi = int(cuts[r]), int(cuts[r + 1])
            piece = tuple(x[lo:hi] for x in part)
            # a range's first pairs are copied: a view would keep the whole shard's arrays alive
            self.parts[r] = tuple(x.copy() for x in piece) if self.parts[r] is None else \
                add_counts(self.parts[r], piece)

    def total(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair, sorted by (a, b): the ranges copied one after another into one array each,
        every range released once copied (the output's pages are only touched as they are
        filled, so memory stays about one copy of the pairs)."""
        sizes = [0 if p is None else len(p[0]) for p in self.parts]
        out = (np.empty(sum(sizes), np.int32), np.empty(sum(sizes), np.int32), np.empty(sum(sizes), np.int64))
        o = 0
        for r, size in enumerate(sizes):
            if size:
                for x, y in zip(out, self.parts[r]):
                    x[o:o + size] = y
            self.parts[r] = None
            o += size
        return out


def active_counts(act: Activity) -> np.ndarray:
    """n_f per feature (int64 [d_sae]): tokens on which f is active (value > 0), as
    ``int_feature_activity`` counts them; a sum over token shards like n_ab."""
    return np.bincount(act.feature, minlength=act.d_sae).astype(np.int64)


def layer_coactivation(lake, release: str, layer: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(feature_a, feature_b, n_ab, n_f) of one layer: n_ab counted block by block over its
    token shards (``storage.reads.token_blocks``) and added (``RangedCounts``), and each
    feature's n_f (``active_counts``) summed alike: memory holds one shard's incidence and the
    pairs found so far, never the layer's activations."""
    blocks = token_blocks(lake, release, layer)
    if len(blocks) == 1:
        act = load_activity(lake, release, layer, tokens=blocks[0])
        return (*coactivation_counts(act), active_counts(act))
    total, active = None, None
    for block in blocks:
        act = load_activity(lake, release, layer, tokens=block)
        if total is None:
            total, active = RangedCounts(act.d_sae), np.zeros(act.d_sae, np.int64)
        active += active_counts(act)
        part = coactivation_counts(act)
        del act                        # the shard's activations go before its pairs are merged
        total.add(part)
        del part
    return (*total.total(), active)


def coactivation_unit(home: str, release: str, layer: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One unit of ``saew coactivation`` (in this process, a worker process or a Ray task): the
    n_ab of one layer of the lake at ``home`` (``layer_coactivation``)."""
    from saew.storage.lake import Lake

    return layer_coactivation(Lake(home), release, layer)


# ---------------------------------------------------------------------------- command
def write_counts(lake, unit: str, result: tuple, release: str) -> int:
    """A unit's ``coactivations`` rows (the partition of its layer), each pair with n_a and
    n_b beside n_ab (so ``fct_coactivation_pairs`` is a projection, not two joins of every
    pair); the number of pairs."""
    from saew.compute.units import unit_layers

    a, b, n, active = result
    lake.write("coactivations", {"feature_a": a, "feature_b": b, "n_ab": n,
                                 "n_a": active[a], "n_b": active[b]},
               release=release, layer=unit_layers(unit)[0])
    return int(n.size)


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose activations to count")
    p.add_argument("--layer", type=int, action="append", default=None,
                   help="only this layer (repeatable; default: every layer with activations)")
    add_executor_arguments(p, "layers", LOCAL_WORKERS)


def run(args, ctx) -> str:
    from saew.compute.options import executor_from_args
    from saew.compute.units import Units, layer_unit

    lake, release = ctx.lake, args.release
    ex = executor_from_args(args, "cpu", local_workers=LOCAL_WORKERS)
    layers = activation_layers(lake, release)
    if not layers:
        raise BadInput(f"--release {release!r}: no activations; run `saew harvest` or "
                       f"`saew ingest activations` first")
    if args.layer:
        missing = sorted(set(args.layer) - set(layers))
        if missing:
            raise BadInput(f"--layer {missing[0]}: release {release!r} has no activations there "
                           f"(layers with activations: {layers})")
        layers = [layer for layer in layers if layer in set(args.layer)]
    units = Units(ctx, [layer_unit(L) for L in layers])
    todo = [L for L in layers if layer_unit(L) in units.todo]
    jobs = ((str(lake.home), release, int(layer)) for layer in todo)
    total = sum(progress((n for _, n in units.map_commit(ex, coactivation_unit, jobs,
                                                        partial(write_counts, release=release))),
                         total=len(todo), desc="coactivation", unit="layer"))
    return (f"coactivation: release {release}: {total} pairs over {len(todo)} layer(s)"
            + (f"\n{units.note()}" if units.skipped else ""))
