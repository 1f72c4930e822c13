"""``saew match``: SAE Match between every pair of adjacent layers of a release.

Reference: N. Balagansky, I. Maksimov, D. Gavrilov, "Mechanistic Permutability: Match Features
Across Layers", ICLR 2025; ../shared/CONTRACT.md section 5 (SAE Match).

Decoder space, per method (theta = JumpReLU threshold, 1 where none; see warehouse.saemath):
  folded          ||w_dec'_i - w_dec'_j||^2 + ||w_enc'_i - w_enc'_j||^2 + (b_enc'_i - b_enc'_j)^2
  folded-decoder  ||w_dec'_i - w_dec'_j||^2
  unfolded        as folded, on the raw parameters
  cosine          1 - cos(w_dec_i, w_dec_j)
  random          a seeded uniformly random bijection (null model): SeedSequence(--seed,
                  spawn_key=(src_layer,)); its cost column is the folded cost.
Text space: cost 1 - cos(e_i, e_j) of description embeddings of one embedder; features without
an embedding are left out.  Methods there: ``cosine`` (the default: the text cost) and
``random`` (cost column = the text cost).
The matching is the exact minimum-total-cost one-to-one matching of min(F_l, F_l+1) pairs
(compute.assignment); ``cost`` is the method's cost of the pair in float64, ``cosine`` the
cosine of the pair's vectors in the match space (decoder rows, or embeddings).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from saew.errors import BadInput

SPACES = ("decoder", "text")
DECODER_METHODS = ("folded", "folded-decoder", "unfolded", "cosine", "random")
TEXT_METHODS = ("cosine", "random")
SOLVERS = ("auto", "exact", "sparse")


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


def match_pair(src, dst, method: str, solver: str = "auto", seed: int = 0, stream: int = 0,
               cfg=None) -> PairMatch:
    """SAE Match of two SAEs (``SAEParams``) in decoder space with one method."""
    from saew.sae.costs import match_vectors, pair_cosines, pair_costs

    from saew.compute.matching.assignment import CosineCosts, SolverConfig, SqEuclidCosts, random_bijection, solve

    cfg = cfg or SolverConfig()
    if method == "random":
        i, j = random_bijection(src.d_sae, dst.d_sae, seed, stream)
        stats = {"solver": "random"}
        cost = pair_costs(src, dst, i, j, "folded")
    else:
        if method == "cosine":
            costs = CosineCosts(src.w_dec, dst.w_dec, screen=cfg.screen)
        else:
            costs = SqEuclidCosts(match_vectors(src, method), match_vectors(dst, method),
                                  screen=cfg.screen)
        res = solve(costs, solver, cfg)
        i, j, stats = res.rows, res.cols, res.stats
        cost = costs.exact(i, j)  # float64, the same formula as warehouse.saemath.pair_costs
    cos = pair_cosines(src.w_dec, dst.w_dec, i, j)
    return PairMatch(i, j, cost, cos, float(cost.sum()), stats)


def match_text(e_src: np.ndarray, f_src: np.ndarray, e_dst: np.ndarray, f_dst: np.ndarray,
               method: str, solver: str = "auto", seed: int = 0, stream: int = 0, cfg=None) -> PairMatch:
    """Text-space match: cost 1 - cos(e_i, e_j) between embedded features ``f_src``/``f_dst``."""
    from saew.compute.matching.assignment import CosineCosts, SolverConfig, random_bijection, solve

    cfg = cfg or SolverConfig()
    costs = CosineCosts(e_src, e_dst, screen=cfg.screen)
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
    """(features, embeddings) of one layer (compute.embed.load_embeddings); BadInput if none."""
    from saew.compute.text.embed import load_embeddings

    feats, emb = load_embeddings(lake, release, layer, embedder)
    if len(feats) == 0:
        raise BadInput(f"release {release!r} layer {layer}: no embeddings from embedder "
                       f"{embedder!r}; run saew embed first")
    return feats, emb


def adjacent_pairs(lake, release: str) -> list[tuple[int, int]]:
    from saew.storage.saes import require_release

    ls = require_release(lake, release)
    if len(ls) < 2:
        raise BadInput(f"--release {release!r}: only layer {ls[0]} is ingested; matching needs "
                       f"at least two layers")
    return list(zip(ls[:-1], ls[1:]))


def run(args, ctx) -> str:
    from saew.progress import progress
    from saew.storage.saes import load_sae

    from saew.compute.matching.assignment import SolverConfig, resolve_screen
    from saew.compute.text.embed import pick_embedder

    lake, release = ctx.lake, args.release
    methods = resolve_methods(args.space, args.method)
    if args.solver not in SOLVERS:
        raise BadInput(f"--solver {args.solver!r}: expected one of {', '.join(SOLVERS)}")
    if args.candidates < 1:
        raise BadInput(f"--candidates {args.candidates}: must be at least 1")
    cfg = SolverConfig(k=args.candidates, screen=resolve_screen(args.screen))
    pairs = adjacent_pairs(lake, release)
    embedder = pick_embedder(lake, release, args.embedder) if args.space == "text" else None
    cache: dict[int, object] = {}

    def get(layer: int):
        if layer not in cache:
            if embedder is None:
                cache[layer] = load_sae(lake, release, layer)
            else:
                cache[layer] = layer_embeddings(lake, release, layer, embedder)
        return cache[layer]

    lines = []
    for l0, l1 in progress(pairs, total=len(pairs), desc=f"match {args.space}"):
        a, b = get(l0), get(l1)
        for old in [x for x in cache if x < l0]:
            del cache[old]
        if embedder is None and a.d_in != b.d_in:
            raise BadInput(f"release {release!r}: layer {l0} has d_in {a.d_in} but layer {l1} has "
                           f"d_in {b.d_in}; adjacent SAEs must share d_in to be matched")
        if embedder is not None and a[1].shape[1] != b[1].shape[1]:
            raise BadInput(f"release {release!r}: embeddings of layers {l0} and {l1} differ in width")
        for method in methods:
            seed = (int(ctx.seed), int(l0))
            if embedder is None:
                r = match_pair(a, b, method, args.solver, *seed, cfg=cfg)
            else:
                r = match_text(a[1], a[0], b[1], b[0], method, args.solver, *seed, cfg=cfg)
            lake.write("matches", {
                "src_feature": r.src_feature.astype(np.int32),
                "dst_layer": np.full(len(r.src_feature), l1, dtype=np.int32),
                "dst_feature": r.dst_feature.astype(np.int32),
                "cost": r.cost.astype(np.float64), "cosine": r.cosine.astype(np.float64),
            }, release=release, space=args.space, method=method, src_layer=int(l0))
            lines.append(f"  {l0} -> {l1} {method}: {len(r.src_feature)} pairs, total cost "
                         f"{r.total:.6g}, mean cosine {float(np.mean(r.cosine)) if len(r.cosine) else float('nan'):.3f}"
                         f" [{r.stats.get('solver')}]")
    head = (f"matched {len(pairs)} layer pair(s) of {release!r} in {args.space} space"
            + (f" (embedder {embedder})" if embedder else "") + f": {', '.join(methods)}")
    return "\n".join([head, *lines])
