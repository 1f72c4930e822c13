"""``saew evaluate``: hidden-state reconstruction through matches (CONTRACT section 5).

For adjacent layers l -> l+1 and a matching pi (matches table: src_feature i -> dst_feature
pi(i)):

    x_hat(l+1) = decode_{l+1}(P f_l(x(l))),   (P f)[pi(i)] = f[i]
               = sum_i f_l[i] * W_dec^{l+1}[pi(i)] + b_dec^{l+1}
    fvu = sum_t ||x_hat_t - x_t||^2 / sum_t ||x_t - mean(x)||^2,   explained_variance = 1 - fvu

(Balagansky et al., "Mechanistic Permutability", ICLR 2025, sec. 5.3; the public code
indexes the decoder with pi^-1, i.e. applies the permutation backwards: we gather
W_dec^{l+1}[pi(i)] for source feature i.)  Source features without a match contribute nothing.

The reference hidden state x(l+1): the lake stores SAE codes (``activations``), not raw
residuals, so x(l+1) is layer l+1's SAE reconstruction of its own codes,
decode_{l+1}(f_{l+1}), on the same tokens.  For ``layer_norm`` SAEs both sides stay in the
SAE's normalised space (the per-token mean/std are not stored).  Tokens: those with an
activation at l or l+1 (the first ``--tokens`` of them, by token_id, if given), plus, without
``--tokens``, the tokens of ``activation_sets`` where neither layer fired (x = x_hat = b_dec).

Baselines written alongside every matching method (same space): ``identity`` (pi(i) = i, only
when both layers have the same width) and ``random`` (the ``random`` matches of that space if
present, else the seeded bijection ``saew match --method random`` would draw).  The further null
draws ``random.<i>`` are skipped unless named by ``--method``.

Layer pairs are units (``compute.units``: ``pair=l-l+1``): each pair's errors are computed by one
call of ``_pair_job`` through the executor (``--executor local|ray``, ``--workers``; local
default: this process, whose sparse products already use both cores), its rows committed as
soon as it is done (each method's ``reconstruction`` partition rewritten with every pair so
far), so a failure keeps the pairs before it and a re-run with the same parameters computes
only the rest, keeping the stored rows of the pairs it skips.
"""
from __future__ import annotations

import numpy as np

from saew.compute.options import add_device_argument, add_executor_arguments
from saew.errors import BadInput
from saew.sae.metrics import fvu

CHUNK_TOKENS = 16384


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release to evaluate")
    p.add_argument("--space", default="decoder", help="which matches: decoder (default) or text")
    p.add_argument("--method", default="all",
                   help="a matching method present in `matches`, or all (default); the identity "
                        "and random baselines are always written")
    p.add_argument("--tokens", type=int, default=None,
                   help="use at most N tokens (the first N by token_id; default all)")
    add_device_argument(p)
    add_executor_arguments(p, "layer pairs", local_workers=1)


def gathered_decoder(w_dec: np.ndarray, n_src: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rows W[i] = w_dec[pi(i)] for matched source features i (zero rows for unmatched), so that
    f @ W = (P f) @ w_dec with (P f)[pi(i)] = f[i]."""
    w = np.zeros((n_src, w_dec.shape[1]), dtype=np.float32)
    w[src] = w_dec[dst]
    return w


def reconstruction_error(f_src, f_dst, w_dec_dst: np.ndarray, decoders: dict[str, np.ndarray],
                         n_zero: int = 0, device: str = "cpu") -> tuple[dict[str, float], float, int]:
    """Sum of squared errors per method and the total variance of the reference x(l+1).

    f_src [T, F_l], f_dst [T, F_l+1]: scipy sparse codes of the same T tokens; decoders: method
    -> gathered decoder [F_l, d] (see ``gathered_decoder``).  The reference is
    x = f_dst @ w_dec_dst + b (b cancels in both sums); ``n_zero`` more tokens have x = x_hat = b.
    Returns ({method: sum_t ||x_hat_t - x_t||^2}, sum_t ||x_t - mean x||^2, n_tokens).
    ``device`` (``--device``): where the products run, chunk by chunk (float64 sums: on the CPU
    for mps, which has no float64); cpu is exactly the code that ran before devices existed.
    """
    import torch

    n = f_src.shape[0] + n_zero
    if n == 0:
        return {m: float("nan") for m in decoders}, float("nan"), 0
    mean = (np.asarray(f_dst.sum(axis=0), dtype=np.float64).ravel() @ w_dec_dst.astype(np.float64)) / n
    den = n_zero * float(mean @ mean)
    num = {m: 0.0 for m in decoders}
    w_ref = torch.from_numpy(np.array(w_dec_dst, dtype=np.float32, order="C")).to(device)
    ws = {m: torch.from_numpy(np.array(w, dtype=np.float32, order="C")).to(device)
          for m, w in decoders.items()}
    host = (lambda t: t.cpu()) if device == "mps" else (lambda t: t)   # float64 where it exists
    mu = torch.from_numpy(mean).to("cpu" if device == "mps" else device)
    for t0 in range(0, f_src.shape[0], CHUNK_TOKENS):
        x = _torch_csr(f_dst[t0:t0 + CHUNK_TOKENS]).to(device) @ w_ref   # sparse x dense, multi-threaded
        den += float(((host(x).double() - mu) ** 2).sum())
        a = _torch_csr(f_src[t0:t0 + CHUNK_TOKENS]).to(device)
        for m, w in ws.items():
            d = torch.addmm(x, a, w, alpha=1.0, beta=-1.0)   # x_hat - x (b cancels), float32
            num[m] += float(torch.sum(host(d * d), dtype=torch.float64))
    return num, den, n


def _torch_csr(a):
    """A scipy CSR matrix as a torch sparse CSR tensor (float32), sharing nothing mutable."""
    import warnings

    import torch

    a = a.tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(torch.from_numpy(a.indptr.astype(np.int64)),
                                       torch.from_numpy(a.indices.astype(np.int64)),
                                       torch.from_numpy(a.data.astype(np.float32)), size=a.shape)


def _layer_codes(lake, release: str, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token_id int64, feature int64, value float32) of every stored activation of one layer."""
    t = lake.query("SELECT token_id, feature, value FROM activations WHERE release = ? AND layer = ?",
                   [release, int(layer)])
    return (t.column("token_id").to_numpy().astype(np.int64), t.column("feature").to_numpy().astype(np.int64),
            t.column("value").to_numpy().astype(np.float32))


def _codes(raw: tuple[np.ndarray, np.ndarray, np.ndarray], release: str, layer: int,
           tokens: np.ndarray, width: int):
    """Sparse codes [len(tokens), width] of one layer (``_layer_codes``) on the given (sorted)
    token ids."""
    import scipy.sparse as sp

    tok, feat, val = raw
    if len(feat) and (feat.min() < 0 or feat.max() >= width):
        raise BadInput(f"release {release!r} layer {layer}: activations name feature "
                       f"{int(feat.max())}, but the SAE has d_sae {width}")
    pos = np.searchsorted(tokens, tok)
    ok = (pos < len(tokens)) & (tokens[np.minimum(pos, len(tokens) - 1)] == tok) if len(tokens) else \
        np.zeros(len(tok), bool)
    return sp.csr_matrix((val[ok], (pos[ok], feat[ok])), shape=(len(tokens), width), dtype=np.float32)


def _token_universe(release: str, raws: dict[int, tuple], sets: dict[int, list], l0: int, l1: int,
                    limit: int | None) -> tuple[np.ndarray, int]:
    """The tokens of a pair: those with an activation at l0 or l1, ascending (the first
    ``limit``), and, without a limit, how many more tokens ``activation_sets`` counts (when both
    layers have one row there: the smaller n_tokens minus the active ones)."""
    missing = sorted(L for L in (l0, l1) if raws[L][0].size == 0)
    if missing:
        raise BadInput(f"release {release!r} layer {missing[0]}: no activations; run saew harvest "
                       f"or saew ingest activations first")
    tokens = np.union1d(raws[l0][0], raws[l1][0]).astype(np.int64)
    if limit is not None:
        return tokens[:int(limit)], 0
    rows = sets.get(l0, []) + sets.get(l1, [])
    known = [n for n in rows if n is not None]
    n_zero = max(0, min(known) - len(tokens)) if len(rows) == 2 and known else 0
    return tokens, n_zero


def _pair_job(l0: int, l1: int, f0, f1, w_dec_dst: np.ndarray, decoders: dict[str, np.ndarray],
              n_zero: int, device: str) -> tuple[int, int, dict[str, float], float, int]:
    """One layer pair (a unit, through the executor): (l0, l1, {method: sse}, variance, n)."""
    if not decoders:
        return l0, l1, {}, float("nan"), 0
    num, den, n = reconstruction_error(f0, f1, w_dec_dst, decoders, n_zero, device)
    return l0, l1, num, den, n


RECON_COLUMNS = ("src_layer", "dst_layer", "n_tokens", "fvu", "explained_variance")


def _kept_rows(lake, release: str, space: str, layers: list[int]) -> dict[str, list[tuple]]:
    """The stored ``reconstruction`` rows of the pairs (by source layer) an earlier, interrupted
    run finished: method -> [(src_layer, dst_layer, n_tokens, fvu, explained_variance)]."""
    if not layers or not lake.has_data("reconstruction"):
        return {}
    t = lake.query(f"SELECT method, {', '.join(RECON_COLUMNS)} FROM reconstruction WHERE release = ? "
                   "AND space = ? AND list_contains(?, src_layer) ORDER BY method, src_layer",
                   [release, space, [int(L) for L in layers]]).to_pylist()
    out: dict[str, list[tuple]] = {}
    for r in t:
        out.setdefault(r["method"], []).append(tuple(r[c] for c in RECON_COLUMNS))
    return out


def _write_rows(lake, release: str, space: str, rows: dict[str, list[tuple]], methods) -> None:
    """Replace the ``reconstruction`` partitions of ``methods`` with their rows, by source layer."""
    for m in methods:
        rs = sorted(rows[m], key=lambda r: r[0])
        a = np.array(rs, dtype=object)
        lake.write("reconstruction", {
            "src_layer": a[:, 0].astype(np.int32), "dst_layer": a[:, 1].astype(np.int32),
            "n_tokens": a[:, 2].astype(np.int64), "fvu": a[:, 3].astype(np.float64),
            "explained_variance": a[:, 4].astype(np.float64),
        }, release=release, space=space, method=m)


def run(args, ctx) -> str:
    from saew.progress import progress
    from saew.storage.saes import load_sae

    from saew.compute.matching.solver import random_bijection
    from saew.compute.options import executor_from_args, step_device
    from saew.compute.units import Units, pair_unit
    from saew.storage.names import SPACES
    from saew.storage.reads import adjacent_pairs
    from saew.storage.names import null_draw_index

    lake, release = ctx.lake, args.release
    if args.space not in SPACES:
        raise BadInput(f"--space {args.space!r}: expected decoder or text")
    if args.tokens is not None and args.tokens <= 0:
        raise BadInput(f"--tokens {args.tokens}: must be positive")
    device = step_device(args)
    ex = executor_from_args(args, device, local_workers=1)
    pairs = adjacent_pairs(lake, release)
    present = lake.query("SELECT DISTINCT src_layer, method FROM matches WHERE release = ? AND space = ?",
                         [release, args.space])
    # the null is draw 0 (``random``): the further draws random.<i> are not methods of their own
    have = {(s, m) for s, m in zip(present.column("src_layer").to_pylist(), present.column("method").to_pylist())
            if not null_draw_index(m) or m == args.method}
    if args.method != "all" and args.method not in {m for _, m in have} | {"identity", "random"}:
        raise BadInput(f"--method {args.method!r}: no {args.space}-space matches of that method for "
                       f"release {release!r}; run saew match first")
    if args.method == "all" and not have:
        raise BadInput(f"release {release!r}: no {args.space}-space matches; run saew match first")
    widths = {int(r["layer"]): (r["d_in"], r["d_sae"]) for r in lake.query(
        "SELECT layer, d_in, d_sae FROM saes WHERE release = ?", [release]).to_pylist()}
    for l0, l1 in pairs:     # before any unit is written
        if widths[l0][0] != widths[l1][0]:
            raise BadInput(f"release {release!r}: layer {l0} has d_in {widths[l0][0]} but layer {l1} has "
                           f"d_in {widths[l1][0]}")

    plan = Units(ctx, [pair_unit(l0, l1) for l0, l1 in pairs])
    todo = [(l0, l1) for l0, l1 in pairs if pair_unit(l0, l1) in plan.todo]
    rows = _kept_rows(lake, release, args.space, [l0 for l0, l1 in pairs if (l0, l1) not in todo])
    st = lake.query("SELECT layer, n_tokens FROM activation_sets WHERE release = ?", [release])
    sets: dict[int, list] = {}
    for L, n in zip(st.column("layer").to_pylist(), st.column("n_tokens").to_pylist()):
        sets.setdefault(int(L), []).append(n)

    def jobs():
        # each layer's SAE and codes are read once: a layer is the destination of one pair and
        # the source of the next
        saes: dict[int, object] = {}
        raws: dict[int, tuple] = {}
        for l0, l1 in todo:
            saes = {L: saes[L] if L in saes else load_sae(lake, release, L) for L in (l0, l1)}
            src, dst = saes[l0], saes[l1]
            methods = sorted(m for s, m in have if s == l0 and (args.method in ("all", m)))
            decoders: dict[str, np.ndarray] = {}
            for m in methods:
                t = lake.query("SELECT src_feature, dst_feature FROM matches WHERE release = ? AND space = ? "
                               "AND method = ? AND src_layer = ?", [release, args.space, m, int(l0)])
                i = t.column("src_feature").to_numpy().astype(np.int64)
                j = t.column("dst_feature").to_numpy().astype(np.int64)
                if len(i) and (i.max() >= src.d_sae or j.max() >= dst.d_sae or min(i.min(), j.min()) < 0):
                    raise BadInput(f"matches {args.space}/{m} layer {l0}: feature index out of range")
                decoders[m] = gathered_decoder(dst.w_dec, src.d_sae, i, j)
            if args.method in ("all", "identity") and src.d_sae == dst.d_sae:
                k = np.arange(src.d_sae)
                decoders["identity"] = gathered_decoder(dst.w_dec, src.d_sae, k, k)
            if args.method in ("all", "random") and "random" not in decoders:
                i, j = random_bijection(src.d_sae, dst.d_sae, int(ctx.seed), int(l0))
                decoders["random"] = gathered_decoder(dst.w_dec, src.d_sae, i, j)
            if not decoders:
                yield l0, l1, None, None, dst.w_dec, {}, 0, device
                continue
            raws = {L: raws[L] if L in raws else _layer_codes(lake, release, L) for L in (l0, l1)}
            tokens, n_zero = _token_universe(release, raws, sets, l0, l1, args.tokens)
            f0 = _codes(raws[l0], release, l0, tokens, src.d_sae)
            f1 = _codes(raws[l1], release, l1, tokens, dst.d_sae)
            yield l0, l1, f0, f1, dst.w_dec, decoders, n_zero, device

    for l0, l1, num, den, n in progress(ex.map(_pair_job, jobs(), len(todo)), total=len(todo),
                                        desc="evaluate"):
        for m, e in num.items():
            v = fvu(e, den)
            rows.setdefault(m, []).append((int(l0), int(l1), n, v, 1.0 - v))
        _write_rows(lake, release, args.space, rows, sorted(num))
        plan.commit(pair_unit(l0, l1))
    lines = [f"  {m}: mean fvu {np.nanmean(np.array([r[3] for r in rs], float)):.4f} over {len(rs)} pair(s)"
             for m, rs in sorted(rows.items())]
    return "\n".join([f"reconstruction through {args.space}-space matches of {release!r}:", *lines,
                      *([plan.note()] if plan.skipped else [])])
