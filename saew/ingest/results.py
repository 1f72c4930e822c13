"""``saew ingest clusters|matches|transport|activations``: results computed elsewhere, stored in
the same tables the compute steps write, so the same SQL and dbt models analyse them.

* clusters: ``.npy`` with one int label per feature (-1 noise, -2 no vector; length = d_sae),
  or ``.csv``/``.parquet`` (feature, cluster[, probability, x, y]); absent columns are NULL.
* matches: ``.npy`` perm with perm[i] = j (-1 unmatched; length = d_sae of the source layer),
  or ``.csv``/``.parquet`` (src_feature, dst_feature[, cost]). It must be one-to-one and in range.
  ``cost`` is always the ``folded`` cost computed from ``features`` (a file's own cost column is
  ignored) and ``cosine`` the decoder-row cosine. ``--src-layer`` may be left out for files named
  like ``P_03_04.npy`` (source 3, destination 4); ``--dst-layer`` defaults to the next ingested layer.
* transport: ``.csv``/``.parquet`` (src_cluster, dst_cluster, mass[, cost]) or ``.npz``
  (plan [n_src, n_dst], src_clusters [n_src], dst_clusters [n_dst][, cost [n_src, n_dst]]).
  Mass is in source-feature units (``--mass-unit fraction`` multiplies a plan that sums to 1 by
  the source layer's d_sae). Negative or non-finite mass is refused; masses below 1e-9 are
  dropped; cost is NULL when absent.
* activations: a scipy sparse ``.npz`` (tokens x features, ``scipy.sparse.save_npz``; token_id =
  row) or ``.parquet`` (token_id, feature, value; then ``--n-tokens`` is required). Only non-zero
  values are stored; ``activation_sets`` gets n_tokens (matrix rows, or ``--n-tokens``). The rows
  computed from the layer's previous activations are dropped (``storage.lineage``).

Every input names an ingested SAE (release, layer) and features below its d_sae, else exit 2;
labels and clusters fit int32, probabilities lie in [0, 1], activations are > 0, FLOAT columns
stay within float32, and layer pairs run forward (src < dst) (``ingest.validate``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.ingest import validate
from saew.ingest.formats.raw import require_file
from saew.ingest.tables import floats, in_range, ints, read_npy, read_sparse, read_table, unique, unique_pairs
from saew.storage.lineage import drop_from_activations
from saew.storage.saes import d_sae, layers

MIN_MASS = 1e-9
_PERM_NAME = re.compile(r"P_(\d+)_(\d+)\.(?:npy|csv|parquet)")


# ---------------------------------------------------------------- arguments
def _release(p) -> None:
    p.add_argument("path", metavar="PATH")
    p.add_argument("--release", required=True, help="release name")


def add_arguments_clusters(p) -> None:
    _release(p)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--space", required=True, help="cluster space, e.g. decoder or text")


def add_arguments_matches(p) -> None:
    _release(p)
    p.add_argument("--src-layer", type=int, default=None,
                   help="source layer (default: from a P_LL_MM file name)")
    p.add_argument("--dst-layer", type=int, default=None, help="destination layer (default: the next ingested layer)")
    p.add_argument("--space", required=True, help="match space, e.g. decoder or text")
    p.add_argument("--method", required=True, help="match method, e.g. folded")


def add_arguments_transport(p) -> None:
    _release(p)
    p.add_argument("--space", required=True, help="cluster space")
    p.add_argument("--src-layer", type=int, required=True)
    p.add_argument("--dst-layer", type=int, default=None, help="destination layer (default: the next ingested layer)")
    p.add_argument("--solver", required=True, help="solver name, e.g. emd or sinkhorn")
    p.add_argument("--mass-unit", choices=["features", "fraction"], default="features",
                   help="features: masses in source-feature units (default); fraction: a plan summing to 1")


def add_arguments_activations(p) -> None:
    _release(p)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--n-tokens", type=int, default=None,
                   help="tokens seen (required for .parquet; default for .npz: matrix rows)")


def _next_layer(lake, release: str, src: int, path: Path) -> int:
    ls = layers(lake, release)
    if src not in ls:
        raise BadInput(f"{path}: release {release!r} has no SAE at layer {src}")
    after = [x for x in ls if x > src]
    if not after:
        raise BadInput(f"{path}: layer {src} is the last ingested layer of release {release!r}; pass --dst-layer")
    return after[0]


def _d_sae(lake, release: str, layer: int, path: Path) -> int:
    try:
        return d_sae(lake, release, layer)
    except BadInput:
        raise BadInput(f"{path}: release {release!r} has no SAE at layer {layer}") from None


# ---------------------------------------------------------------- clusters
def run_clusters(args, ctx) -> str:
    import pyarrow as pa

    path, lake = Path(args.path), ctx.lake
    require_file(path)
    n = _d_sae(lake, args.release, args.layer, path)
    null = pa.nulls
    if path.suffix == ".npy":
        labels = read_npy(path)
        if labels.ndim != 1 or labels.shape[0] != n:
            raise BadInput(f"{path}: label array has shape {labels.shape}, expected ({n},) "
                           f"(one label per feature of layer {args.layer})")
        cluster = ints(labels, path, "labels")
        feature = np.arange(n, dtype=np.int64)
        prob = x = y = None
    else:
        t = read_table(path, ("feature", "cluster"))
        feature, cluster = ints(t.column("feature"), path, "feature"), ints(t.column("cluster"), path, "cluster")
        in_range(feature, 0, n, path, "feature")
        unique(feature, path, "feature")
        opt = {c: floats(t.column(c), path, c, nullable=True, float32=True) if c in t.column_names else None
               for c in ("probability", "x", "y")}
        prob, x, y = opt["probability"], opt["x"], opt["y"]
        if prob is not None:
            validate.unit_interval(prob, str(path), "probability")
    if (cluster < -2).any():
        raise BadInput(f"{path}: cluster label {int(cluster[cluster < -2][0])} is invalid (labels are >= 0, -1 noise, -2 none)")
    order = np.argsort(feature, kind="stable")
    col = lambda v: null(len(order), pa.float32()) if v is None else pa.array(v[order], pa.float32(), from_pandas=True)  # noqa: E731
    ctx.lake.write("clusters", {
        "feature": feature[order].astype(np.int32), "cluster": cluster[order].astype(np.int32),
        "probability": col(prob), "x": col(x), "y": col(y),
    }, release=args.release, layer=int(args.layer), space=args.space)
    k = int(np.unique(cluster[cluster >= 0]).size)
    return (f"clusters: {len(feature)} features, {k} clusters, {int((cluster == -1).sum())} noise "
            f"(release {args.release!r} layer {args.layer} space {args.space})")


# ---------------------------------------------------------------- matches
def run_matches(args, ctx) -> str:
    from saew.sae.costs import pair_cosines, pair_costs
    from saew.storage.saes import load_sae

    path, lake, release = Path(args.path), ctx.lake, args.release
    require_file(path)
    src_layer, dst_layer = args.src_layer, args.dst_layer
    m = _PERM_NAME.fullmatch(path.name)
    if src_layer is None:
        if not m:
            raise BadInput(f"{path}: pass --src-layer (the file name is not like P_03_04.npy)")
        src_layer = int(m.group(1))
        dst_layer = dst_layer if dst_layer is not None else int(m.group(2))
    if dst_layer is None:
        dst_layer = _next_layer(lake, release, src_layer, path)
    validate.layer(src_layer, str(path))
    validate.layer(dst_layer, str(path))
    validate.layer_pair(src_layer, dst_layer, str(path))
    n_src = _d_sae(lake, release, src_layer, path)
    n_dst = _d_sae(lake, release, dst_layer, path)
    if path.suffix == ".npy":
        perm = read_npy(path)
        if perm.ndim != 1 or perm.shape[0] != n_src:
            raise BadInput(f"{path}: permutation has shape {perm.shape}, expected ({n_src},) "
                           f"(perm[i] = j for each feature i of layer {src_layer})")
        perm = ints(perm, path, "permutation")
        if (perm < -1).any():
            raise BadInput(f"{path}: permutation entry {int(perm[perm < -1][0])} is out of range (-1 or [0, {n_dst}))")
        i = np.flatnonzero(perm >= 0)
        j = perm[i]
    else:
        t = read_table(path, ("src_feature", "dst_feature"))
        i, j = ints(t.column("src_feature"), path, "src_feature"), ints(t.column("dst_feature"), path, "dst_feature")
        keep = j >= 0
        if (j < -1).any():
            raise BadInput(f"{path}: dst_feature {int(j[j < -1][0])} is out of range (-1 or [0, {n_dst}))")
        i, j = i[keep], j[keep]
        in_range(i, 0, n_src, path, "src_feature")
        unique(i, path, "src_feature")
    in_range(j, 0, n_dst, path, "dst_feature")
    unique(j, path, "destination feature (not one-to-one)")
    order = np.argsort(i, kind="stable")
    i, j = i[order], j[order]
    src, dst = load_sae(lake, release, src_layer), load_sae(lake, release, dst_layer)
    cost = pair_costs(src, dst, i, j, "folded")
    cosine = pair_cosines(src.w_dec, dst.w_dec, i, j)
    lake.write("matches", {
        "src_feature": i.astype(np.int32), "dst_layer": np.full(len(i), dst_layer, np.int32),
        "dst_feature": j.astype(np.int32), "cost": cost, "cosine": cosine,
    }, release=release, space=args.space, method=args.method, src_layer=int(src_layer))
    return (f"matches: {len(i)} pairs layer {src_layer} -> {dst_layer} (release {release!r}, space "
            f"{args.space}, method {args.method}); mean folded cost {cost.mean() if len(i) else float('nan'):.4g}, "
            f"mean cosine {cosine.mean() if len(i) else float('nan'):.3f}")


# ---------------------------------------------------------------- transport
def run_transport(args, ctx) -> str:
    path, lake, release = Path(args.path), ctx.lake, args.release
    require_file(path)
    src_layer = args.src_layer
    dst_layer = args.dst_layer if args.dst_layer is not None else _next_layer(lake, release, src_layer, path)
    validate.layer(src_layer, "--src-layer")
    validate.layer(dst_layer, "--dst-layer")
    validate.layer_pair(src_layer, dst_layer, str(path))
    n_src = _d_sae(lake, release, src_layer, path)
    _d_sae(lake, release, dst_layer, path)
    if path.suffix == ".npz":
        from saew.ingest.formats.raw import npz_arrays
        z, _ = npz_arrays(path)
        for name in ("plan", "src_clusters", "dst_clusters"):
            if name not in z:
                raise BadInput(f"{path}: missing array {name!r} (has {sorted(z)})")
        plan = floats(z["plan"], path, "plan")
        sc, dc = ints(z["src_clusters"], path, "src_clusters"), ints(z["dst_clusters"], path, "dst_clusters")
        if plan.ndim != 2 or plan.shape != (sc.size, dc.size):
            raise BadInput(f"{path}: plan has shape {plan.shape}, expected ({sc.size}, {dc.size}) "
                           f"(len(src_clusters), len(dst_clusters))")
        cmat = floats(z["cost"], path, "cost") if "cost" in z else None
        if cmat is not None and cmat.shape != plan.shape:
            raise BadInput(f"{path}: cost has shape {cmat.shape}, expected {plan.shape}")
        unique(sc, path, "src cluster")
        unique(dc, path, "dst cluster")
        a, b = np.meshgrid(np.arange(sc.size), np.arange(dc.size), indexing="ij")
        src_c, dst_c, mass = sc[a.ravel()], dc[b.ravel()], plan.ravel()
        cost = cmat.ravel() if cmat is not None else np.full(mass.size, np.nan)
    else:
        t = read_table(path, ("src_cluster", "dst_cluster", "mass"))
        src_c, dst_c = ints(t.column("src_cluster"), path, "src_cluster"), ints(t.column("dst_cluster"), path, "dst_cluster")
        mass = floats(t.column("mass"), path, "mass")
        cost = (floats(t.column("cost"), path, "cost", nullable=True) if "cost" in t.column_names
                else np.full(mass.size, np.nan))
        unique_pairs(src_c, dst_c, path)
    if (mass < 0).any():
        raise BadInput(f"{path}: negative transport mass {float(mass[mass < 0][0])}")
    for name, c in (("src_cluster", src_c), ("dst_cluster", dst_c)):
        if (c < -1).any():
            raise BadInput(f"{path}: {name} {int(c[c < -1][0])} is invalid (clusters are >= 0, -1 unclustered)")
    if args.mass_unit == "fraction":
        mass = mass * n_src
    keep = mass >= MIN_MASS
    src_c, dst_c, mass, cost = src_c[keep], dst_c[keep], mass[keep], cost[keep]
    order = np.lexsort((dst_c, src_c))
    import pyarrow as pa
    lake.write("transport", {
        "src_cluster": src_c[order].astype(np.int32), "dst_layer": np.full(order.size, dst_layer, np.int32),
        "dst_cluster": dst_c[order].astype(np.int32), "mass": mass[order],
        "cost": pa.array(cost[order], pa.float64(), from_pandas=True),
    }, release=release, space=args.space, solver=args.solver, src_layer=int(src_layer))
    return (f"transport: {order.size} flows layer {src_layer} -> {dst_layer}, total mass {mass.sum():.4g} "
            f"(release {release!r}, space {args.space}, solver {args.solver})")


# ---------------------------------------------------------------- activations
def run_activations(args, ctx) -> str:
    path, lake, release, layer = Path(args.path), ctx.lake, args.release, int(args.layer)
    require_file(path)
    validate.layer(layer, "--layer")
    n = _d_sae(lake, release, layer, path)
    if args.n_tokens is not None:
        validate.int_range(args.n_tokens, 0, validate.MAX_COUNT, "--n-tokens", "token count")
    if path.suffix == ".npz":
        coo = read_sparse(path)
        if coo.shape[1] != n:
            raise BadInput(f"{path}: matrix has shape {coo.shape}, expected (n_tokens, {n}) "
                           f"(one column per feature of layer {layer})")
        tok, feat, val = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
        n_tokens = coo.shape[0] if args.n_tokens is None else args.n_tokens
        if n_tokens < coo.shape[0]:
            raise BadInput(f"--n-tokens {n_tokens}: smaller than the matrix's {coo.shape[0]} rows")
        val = floats(val, path, "values", float32=True)
    elif path.suffix == ".parquet":
        if args.n_tokens is None:
            raise BadInput(f"{path}: a .parquet activation file needs --n-tokens")
        t = read_table(path, ("token_id", "feature", "value"))
        tok = ints(t.column("token_id"), path, "token_id", bits=64)
        feat = ints(t.column("feature"), path, "feature")
        val = floats(t.column("value"), path, "value", float32=True)
        n_tokens = args.n_tokens
        in_range(tok, 0, max(n_tokens, 0), path, "token_id")
        in_range(feat, 0, n, path, "feature")
    else:
        raise BadInput(f"{path}: expected a scipy sparse .npz or a .parquet file")
    keep = val != 0
    tok, feat, val = tok[keep], feat[keep], val[keep]
    validate.positive(val, str(path), "activation value")
    order = np.lexsort((feat, tok))
    tok, feat, val = tok[order], feat[order], val[order]
    dup = (np.diff(tok) == 0) & (np.diff(feat) == 0)
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise BadInput(f"{path}: token {int(tok[k])} feature {int(feat[k])} appears more than once")
    drop_from_activations(lake, release, [layer])
    lake.write("activations", {"token_id": tok, "feature": feat.astype(np.int32),
                               "value": val.astype(np.float32)}, release=release, layer=layer)
    lake.write("activation_sets", {"n_tokens": [int(n_tokens)], "source": ["ingest"], "run_id": [ctx.run_id]},
               release=release, layer=layer)
    return (f"activations: {tok.size} non-zero values over {n_tokens} tokens "
            f"(release {release!r} layer {layer})")
