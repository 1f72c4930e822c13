"""``saew match``: SAE Match between every pair of adjacent layers of a release.

Reference: N. Balagansky, I. Maksimov, D. Gavrilov, "Mechanistic Permutability: Match Features
Across Layers", ICLR 2025; ../shared/CONTRACT.md section 5 (SAE Match).

Decoder space, per method (theta = JumpReLU threshold, 1 where none; see warehouse.saemath):
  folded          ||w_dec'_i - w_dec'_j||^2 + ||w_enc'_i - w_enc'_j||^2 + (b_enc'_i - b_enc'_j)^2
  folded-decoder  ||w_dec'_i - w_dec'_j||^2
  unfolded        as folded, on the raw parameters
  cosine          1 - cos(w_dec_i, w_dec_j)
  random          a seeded uniformly random bijection (null model): SeedSequence(--seed,
                  spawn_key=(src_layer,)); its cost column is the folded cost.  With
                  ``--draws N`` (default 10) draws 1..N-1 are stored as methods random.<i>
                  (storage.names.null_draw_method), each from its own stream (null_entropy).
Text space: cost 1 - cos(e_i, e_j) of description embeddings of one embedder; features without
an embedding are left out.  Methods there: ``cosine`` (the default: the text cost) and
``random`` (cost column = the text cost; draws as in decoder space).
The matching is the exact minimum-total-cost one-to-one matching of min(F_l, F_l+1) pairs
(compute.matching.solver); ``cost`` is the method's cost of the pair in float64, ``cosine`` the
cosine of the pair's vectors in the match space (decoder rows, or embeddings).

Each layer pair is a unit (``match_unit``: every method and null draw of the pair) run through
``--executor`` (``--device``: where the sparse solver's screening GEMM runs) and committed as
soon as it is done: a failure keeps the pairs before it and a re-run does only the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from saew.compute.options import add_device_argument, add_executor_arguments
from saew.errors import BadInput
from saew.storage.names import (DECODER_METHODS, NULL_METHOD, SPACES, TEXT_METHODS, null_draw_index,
                                null_draw_method)

SOLVERS = ("auto", "exact", "sparse")
DEFAULT_DRAWS = 10            # null draws of ``--method random``; ``--method all`` draws 1 unless told
_NULL_TAG = 0x6E756C6C        # "null": keeps the draw streams apart from every other spawn key
LOCAL_WORKERS = 1           # --executor local: pairs in this process (the GEMMs use every core)


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose adjacent layers to match")
    p.add_argument("--space", default="decoder",
                   help="decoder (SAE parameters; default) or text (description embeddings)")
    p.add_argument("--method", default=None,
                   help="decoder space: folded (default), folded-decoder, unfolded, cosine, random; "
                        "text space: cosine (default), random; or all")
    p.add_argument("--solver", default="auto",
                   help="auto (default), exact (dense scipy) or sparse (certified top-k); all exact")
    p.add_argument("--embedder", default=None,
                   help="text space: which embeddings (default: the only one present, else all-MiniLM-L6-v2)")
    p.add_argument("--candidates", type=int, default=128,
                   help="sparse solver: candidate columns screened per row (default 128; "
                        "fewer use less memory but can need more certificate rounds)")
    p.add_argument("--screen", default="auto",
                   help="sparse solver: precision of the screening GEMM; auto (default) is "
                        "bfloat16 on CPUs with native bf16 (about 2.4x faster), else float32. "
                        "The matching is exact either way (rigorous rounding bounds)")
    p.add_argument("--draws", type=int, default=None,
                   help=f"--method random: how many seeded null matchings to store, as methods "
                        f"random, random.1, ... (default {DEFAULT_DRAWS}; --method all stores 1 "
                        f"unless given); a re-run replaces the whole set")
    add_executor_arguments(p, "layer pairs", LOCAL_WORKERS)
    add_device_argument(p)


@dataclass
class PairMatch:
    src_feature: np.ndarray
    dst_feature: np.ndarray
    cost: np.ndarray
    cosine: np.ndarray
    total: float
    stats: dict = field(default_factory=dict)


def resolve_methods(space: str, method: str | None) -> list[str]:
    if space not in SPACES:
        raise BadInput(f"--space {space!r}: expected decoder or text")
    allowed = DECODER_METHODS if space == "decoder" else TEXT_METHODS
    if method is None:
        return [allowed[0]]
    if method == "all":
        return list(allowed)
    if method not in allowed:
        raise BadInput(f"--method {method!r}: the {space} space takes {', '.join(allowed)} or all")
    return [method]


def resolve_draws(method: str | None, draws: int | None) -> int:
    """How many null draws a run stores: ``--draws`` (only with --method random or all), else
    DEFAULT_DRAWS for --method random and 1 for all; 0 when the run writes no null."""
    if draws is not None:
        if method not in (NULL_METHOD, "all"):
            raise BadInput(f"--draws {draws}: only --method {NULL_METHOD} (or all) takes draws, "
                           f"not --method {method or 'the default'}")
        if draws < 1:
            raise BadInput(f"--draws {draws}: must be at least 1")
        return int(draws)
    return DEFAULT_DRAWS if method == NULL_METHOD else 1 if method == "all" else 0


def null_entropy(seed: int, space: str, draw: int) -> int:
    """The entropy of null draw ``draw``'s streams, one per layer pair: SeedSequence(entropy,
    spawn_key=(src_layer,)) as ``random_bijection`` draws them.

    Draw 0 is ``seed`` itself, so ``random`` is what it always was.  Draw i >= 1 is the 128-bit
    integer of SeedSequence(seed, spawn_key=(_NULL_TAG, SPACES.index(space), i)).generate_state(4):
    independent across draws, spaces and (through the spawn key) layer pairs, reproducible.
    """
    if draw == 0:
        return int(seed)
    words = np.random.SeedSequence(int(seed), spawn_key=(_NULL_TAG, SPACES.index(space), int(draw)))
    return int.from_bytes(words.generate_state(4, np.uint32).tobytes(), "little")


def match_pair(src, dst, method: str, solver: str = "auto", seed: int = 0, stream: int = 0,
               cfg=None, folded=None) -> PairMatch:
    """SAE Match of two SAEs (``SAEParams``) in decoder space with one method.

    ``random``: the cost column is ``pair_costs(..., "folded")``, or, given ``folded`` (one
    ``folded_costs(src, dst)`` shared by the null draws of a layer pair), its float64 ``exact``
    -- the same formula in one pass (agrees to ~1e-16 relative; draw 0 keeps pair_costs)."""
    from saew.sae.costs import match_vectors, pair_cosines, pair_costs

    from saew.compute.matching.costs import CosineCosts, SqEuclidCosts
    from saew.compute.matching.solver import SolverConfig, random_bijection, solve

    cfg = cfg or SolverConfig()
    if method == "random":
        i, j = random_bijection(src.d_sae, dst.d_sae, seed, stream)
        stats = {"solver": "random"}
        cost = pair_costs(src, dst, i, j, "folded") if folded is None else folded.exact(i, j)
    else:
        if method == "cosine":
            costs = CosineCosts(src.w_dec, dst.w_dec, screen=cfg.screen, device=cfg.device)
        else:
            costs = SqEuclidCosts(match_vectors(src, method), match_vectors(dst, method),
                                  screen=cfg.screen, device=cfg.device)
        res = solve(costs, solver, cfg)
        i, j, stats = res.rows, res.cols, res.stats
        cost = costs.exact(i, j)  # float64, the same formula as warehouse.saemath.pair_costs
    cos = pair_cosines(src.w_dec, dst.w_dec, i, j)
    return PairMatch(i, j, cost, cos, float(cost.sum()), stats)


def folded_costs(src, dst):
    """The folded cost of two SAEs as a cost provider (``exact(i, j)``: float64 per pair)."""
    from saew.sae.costs import match_vectors

    from saew.compute.matching.costs import SqEuclidCosts

    return SqEuclidCosts(match_vectors(src, "folded"), match_vectors(dst, "folded"))


def match_text(e_src: np.ndarray, f_src: np.ndarray, e_dst: np.ndarray, f_dst: np.ndarray,
               method: str, solver: str = "auto", seed: int = 0, stream: int = 0, cfg=None,
               costs=None) -> PairMatch:
    """Text-space match: cost 1 - cos(e_i, e_j) between embedded features ``f_src``/``f_dst``.

    ``costs``: a ``CosineCosts(e_src, e_dst)`` to reuse (the null draws of a layer pair share one)."""
    from saew.compute.matching.costs import CosineCosts
    from saew.compute.matching.solver import SolverConfig, random_bijection, solve

    cfg = cfg or SolverConfig()
    costs = CosineCosts(e_src, e_dst, screen=cfg.screen, device=cfg.device) if costs is None else costs
    if method == "random":
        i, j = random_bijection(len(f_src), len(f_dst), seed, stream)
        stats = {"solver": "random"}
    else:
        res = solve(costs, solver, cfg)
        i, j, stats = res.rows, res.cols, res.stats
    cost = costs.exact(i, j)
    return PairMatch(f_src[i].astype(np.int64), f_dst[j].astype(np.int64), cost, 1.0 - cost,
                     float(cost.sum()), stats)


# --------------------------------------------------------------------------- lake access
def layer_embeddings(lake, release: str, layer: int, embedder: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, embeddings) of one layer (storage.reads.load_embeddings); BadInput if none."""
    from saew.storage.reads import load_embeddings

    feats, emb = load_embeddings(lake, release, layer, embedder)
    if len(feats) == 0:
        raise BadInput(f"release {release!r} layer {layer}: no embeddings from embedder "
                       f"{embedder!r}; run saew embed first")
    return feats, emb


def run(args, ctx) -> str:
    from saew.progress import progress
    from saew.storage.saes import load_sae

    from saew.compute.matching.costs import resolve_screen
    from saew.compute.matching.solver import SolverConfig
    from saew.compute.options import executor_from_args
    from saew.compute.units import Units, pair_unit
    from saew.storage.reads import adjacent_pairs, pick_embedder

    lake, release = ctx.lake, args.release
    methods = resolve_methods(args.space, args.method)
    draws = resolve_draws(args.method, args.draws)
    if args.solver not in SOLVERS:
        raise BadInput(f"--solver {args.solver!r}: expected one of {', '.join(SOLVERS)}")
    if args.candidates < 1:
        raise BadInput(f"--candidates {args.candidates}: must be at least 1")
    ex = executor_from_args(args, local_workers=LOCAL_WORKERS)
    cfg = SolverConfig(k=args.candidates, screen=resolve_screen(args.screen), device=ex.cfg.device)
    pairs = adjacent_pairs(lake, release)
    runs = [(m, 0) for m in methods if m != NULL_METHOD]
    runs += [(NULL_METHOD, d) for d in range(draws)] if NULL_METHOD in methods else []
    if draws:
        drop_stale_draws(lake, release, args.space, [l0 for l0, _ in pairs], draws)
    embedder = pick_embedder(lake, release, args.embedder) if args.space == "text" else None
    units = Units(ctx, [pair_unit(*p) for p in pairs])
    todo = [p for p in pairs if pair_unit(*p) in units.todo]
    cache: dict[int, object] = {}

    def get(layer: int):
        if layer not in cache:
            if embedder is None:
                cache[layer] = load_sae(lake, release, layer)
            else:
                cache[layer] = layer_embeddings(lake, release, layer, embedder)
        return cache[layer]

    def jobs():   # one unit per layer pair; each layer read once (the next pair's source)
        for l0, l1 in todo:
            a, b = get(l0), get(l1)
            for old in [x for x in cache if x < l0]:
                del cache[old]
            if embedder is None and a.d_in != b.d_in:
                raise BadInput(f"release {release!r}: layer {l0} has d_in {a.d_in} but layer {l1} has "
                               f"d_in {b.d_in}; adjacent SAEs must share d_in to be matched")
            if embedder is not None and a[1].shape[1] != b[1].shape[1]:
                raise BadInput(f"release {release!r}: embeddings of layers {l0} and {l1} differ in width")
            yield a, b, int(l0), runs, args.space, args.solver, cfg, int(ctx.seed)

    write = partial(write_matches, release=release, space=args.space)
    lines = [line for _, out in progress(units.map_commit(ex, match_unit, jobs(), write),
                                         total=len(todo), desc=f"match {args.space}") for line in out]
    head = (f"matched {len(pairs)} layer pair(s) of {release!r} in {args.space} space"
            + (f" (embedder {embedder})" if embedder else "") + f": {', '.join(methods)}"
            + (f" ({draws} null draws)" if draws > 1 else ""))
    return "\n".join([head, *lines] + ([units.note()] if units.skipped else []))


def write_matches(lake, unit: str, results: list, release: str, space: str) -> list[str]:
    """A unit's ``matches`` rows (a partition per method and null draw); its output lines (the
    null draws as one line: their mean)."""
    from saew.compute.units import unit_layers

    l0, l1 = unit_layers(unit)
    lines, nulls = [], []
    for name, r in results:
        lake.write("matches", {
            "src_feature": r.src_feature.astype(np.int32),
            "dst_layer": np.full(len(r.src_feature), l1, dtype=np.int32),
            "dst_feature": r.dst_feature.astype(np.int32),
            "cost": r.cost.astype(np.float64), "cosine": r.cosine.astype(np.float64),
        }, release=release, space=space, method=name, src_layer=int(l0))
        if null_draw_index(name) is not None:
            nulls.append(r)
        else:
            lines.append(_line(l0, l1, name, r))
    if nulls:
        lines.append(_line(l0, l1, NULL_METHOD + (f" ({len(nulls)} draws, mean)" if len(nulls) > 1 else ""),
                           *nulls))
    return lines


def match_unit(a, b, l0: int, runs: list[tuple[str, int]], space: str, solver: str, cfg,
               seed: int) -> list[tuple[str, PairMatch]]:
    """One unit of ``saew match``: every (method, null draw) of ``runs`` for the layer pair whose
    source layer is ``l0``; ``a``, ``b`` are its SAEs (decoder space) or (features, embeddings)
    (text space). Returns (stored method name, PairMatch) in ``runs`` order."""
    from saew.compute.matching.costs import CosineCosts

    text = space == "text"
    out, shared = [], None   # the null draws of a pair share one cost provider
    for method, draw in runs:
        stream = (null_entropy(seed, space, draw), int(l0))
        if not text and draw > 0:
            shared = folded_costs(a, b) if shared is None else shared
            r = match_pair(a, b, method, solver, *stream, cfg=cfg, folded=shared)
        elif not text:
            r = match_pair(a, b, method, solver, *stream, cfg=cfg)
        else:
            if method == NULL_METHOD:
                shared = CosineCosts(a[1], b[1], screen=cfg.screen, device=cfg.device) \
                    if shared is None else shared
            r = match_text(a[1], a[0], b[1], b[0], method, solver, *stream, cfg=cfg,
                           costs=shared if method == NULL_METHOD else None)
        out.append((null_draw_method(draw) if method == NULL_METHOD else method, r))
    return out


def _line(l0: int, l1: int, label: str, *rs: PairMatch) -> str:
    """One output line for a layer pair: pairs, total cost and mean cosine (means over draws)."""
    total = float(np.mean([r.total for r in rs]))
    cos = [float(np.mean(r.cosine)) if len(r.cosine) else float("nan") for r in rs]
    return (f"  {l0} -> {l1} {label}: {len(rs[0].src_feature)} pairs, total cost {total:.6g}, "
            f"mean cosine {float(np.mean(cos)):.3f} [{rs[0].stats.get('solver')}]")


def drop_stale_draws(lake, release: str, space: str, src_layers: list[int], draws: int) -> None:
    """Delete the null draws ``random.<i>``, i >= ``draws``, of these source layers (in the run's
    transaction), so a re-run with fewer draws leaves exactly ``draws`` of them."""
    t = lake.query("SELECT DISTINCT method, src_layer FROM matches WHERE release = ? AND space = ?",
                   [release, space])
    keep = set(src_layers)
    for method, layer in zip(t.column("method").to_pylist(), t.column("src_layer").to_pylist()):
        i = null_draw_index(method)
        if i is not None and i >= draws and layer in keep:
            lake.delete_partition("matches", release=release, space=space, method=method,
                                  src_layer=int(layer))
