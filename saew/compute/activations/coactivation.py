"""``saew coactivation``: co-activation counts n_ab per layer (contract 5, Co-activation).

Feature f is *active* on a token when its activation value is > 0. For features a < b,
n_ab = #tokens on which both are active, i.e. the strict upper triangle of B^T B where
B [tokens x features] is the 0/1 activity matrix. Only pairs with n_ab > 0 are written to
``coactivations`` (one partition per (release, layer)).

How: the activations of one layer are grouped twice by counting sorts (token-major B with
ascending features per token, and feature-major B^T with ascending tokens per feature), then
a compiled sparse-times-sparse kernel (Gustavson's row-by-row SpGEMM, upper triangle only)
runs over chunks of features on every core: for feature a it walks the tokens where a is
active and, for each, the features b > a active on that token, counting into a dense
accumulator of length d_sae that is reset after the row. A symbolic pass sizes every output
row first, so the result is written straight into its final arrays (no feature x feature
matrix, dense or sparse, ever exists beyond one row per thread, and there is no Python loop
over features or pairs).

This module also holds the activation loading shared with ``compute/correlate.py`` and
``compute/communities.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saew.errors import BadInput
from saew.progress import progress
from saew.storage.saes import d_sae as sae_width
from saew.storage.saes import require_release


# ---------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Activity:
    """The active entries (value > 0) of one layer, as (token_id, feature, value) triples."""
    token_id: np.ndarray   # int64 [nnz]
    feature: np.ndarray    # int32 [nnz]
    value: np.ndarray      # float32 [nnz]
    d_sae: int
    n_tokens: int | None   # N from activation_sets (all tokens seen), None if no row

    @property
    def nnz(self) -> int:
        return int(self.feature.shape[0])


def activation_layers(lake, release: str) -> list[int]:
    """Layers of ``release`` that have an SAE and either activations or an activation set."""
    layers = require_release(lake, release)
    have = lake.query(
        "SELECT DISTINCT layer FROM activation_sets WHERE release = ? "
        "UNION SELECT DISTINCT layer FROM activations WHERE release = ?",
        [release, release]).column("layer").to_pylist()
    return [layer for layer in layers if layer in set(have)]


def n_tokens(lake, release: str, layer: int) -> int | None:
    """N of ``activation_sets`` for one layer (all tokens seen), or None without a row."""
    r = lake.query("SELECT n_tokens FROM activation_sets WHERE release = ? AND layer = ?",
                   [release, int(layer)])
    return None if r.num_rows == 0 else int(r.column("n_tokens")[0].as_py())


def load_activity(lake, release: str, layer: int) -> Activity:
    """Read one layer's active entries (value > 0) and check them against the SAE and N."""
    width = sae_width(lake, release, layer)
    con = lake.connect()
    try:
        cols = con.sql(
            "SELECT token_id, feature, value FROM activations "
            "WHERE release = ? AND layer = ? AND value > 0",
            params=[release, int(layer)]).fetchnumpy()
    finally:
        con.close()
    tok = np.ascontiguousarray(cols["token_id"], dtype=np.int64)
    feat = np.ascontiguousarray(cols["feature"], dtype=np.int32)
    val = np.ascontiguousarray(cols["value"], dtype=np.float32)
    where = f"activations of release {release!r} layer {layer}"
    if feat.size and (int(feat.min()) < 0 or int(feat.max()) >= width):
        bad = int(feat.max()) if int(feat.max()) >= width else int(feat.min())
        raise BadInput(f"{where}: feature {bad} is outside the SAE's d_sae {width}")
    if tok.size and int(tok.min()) < 0:
        raise BadInput(f"{where}: negative token_id {int(tok.min())}")
    n = n_tokens(lake, release, layer)
    return Activity(tok, feat, val, width, n)


def token_rows(*token_ids: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Dense row numbers for token ids shared across arrays: (rows per array, number of rows).

    Ids in a compact range map to ``id - min`` (rows without activity just stay empty);
    sparse ids go through ``np.unique``.
    """
    nonempty = [t for t in token_ids if t.size]
    if not nonempty:
        return [np.zeros(0, np.int64) for _ in token_ids], 0
    lo = min(int(t.min()) for t in nonempty)
    hi = max(int(t.max()) for t in nonempty)
    total = sum(t.size for t in token_ids)
    if hi - lo + 1 <= 2 * total + 1024:
        return [t - lo for t in token_ids], hi - lo + 1
    uniq, inv = np.unique(np.concatenate(token_ids), return_inverse=True)
    out, start = [], 0
    for t in token_ids:
        out.append(inv[start:start + t.size].astype(np.int64))
        start += t.size
    return out, int(uniq.size)


# ---------------------------------------------------------------------------- kernels
def _jit():
    """The compiled kernels (``compute/kernels.py``), imported on first use."""
    from saew.compute.activations import kernels

    return {"counting_order": kernels.counting_order, "pair_row_sizes": kernels.pair_row_sizes,
            "pair_rows": kernels.pair_rows}




@dataclass(frozen=True)
class Incidence:
    """A 0/1 (or valued) tokens x features matrix held both ways.

    Token-major: t_ptr [n_rows+1], t_feat (features ascending within a token), t_val.
    Feature-major: f_ptr [d+1], f_tok (tokens ascending within a feature), f_val.
    """
    n_rows: int
    d: int
    t_ptr: np.ndarray
    t_feat: np.ndarray
    t_val: np.ndarray
    f_ptr: np.ndarray
    f_tok: np.ndarray
    f_val: np.ndarray


def incidence(rows: np.ndarray, feature: np.ndarray, value: np.ndarray, n_rows: int, d: int) -> Incidence:
    """Group (row, feature, value) triples by token and by feature with stable counting sorts."""
    k = _jit()
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    feature = np.ascontiguousarray(feature, dtype=np.int64)
    _, by_f = k["counting_order"](feature, d)
    t_ptr, by_t = k["counting_order"](rows[by_f], n_rows)
    order = by_f[by_t]                      # token-major, features ascending within a token
    del by_f, by_t
    t_feat = feature[order].astype(np.int32)
    t_rows = rows[order]
    t_val = np.ascontiguousarray(value[order], dtype=np.float32)
    del order
    f_ptr, by_f2 = k["counting_order"](t_feat.astype(np.int64), d)
    f_tok = t_rows[by_f2]                   # feature-major, tokens ascending within a feature
    f_val = t_val[by_f2]
    return Incidence(n_rows, d, t_ptr, t_feat, t_val, f_ptr, f_tok, f_val)


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


# ---------------------------------------------------------------------------- command
def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose activations to count")
    p.add_argument("--layer", type=int, action="append", default=None,
                   help="only this layer (repeatable; default: every layer with activations)")


def run(args, ctx) -> str:
    lake, release = ctx.lake, args.release
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
    total = 0
    for layer in progress(layers, total=len(layers), desc="coactivation", unit="layer"):
        act = load_activity(lake, release, layer)
        a, b, n = coactivation_counts(act)
        del act
        lake.write("coactivations", {"feature_a": a, "feature_b": b, "n_ab": n},
                   release=release, layer=int(layer))
        total += int(n.size)
    return f"coactivation: release {release}: {total} pairs over {len(layers)} layer(s)"
