"""``saew communities``: co-activation graphs, their statistics, and feature communities.

    saew communities --release R [--other-release R2] [--graph all|coactivation|correlation]
                     [--algorithm leiden|louvain] [--npmi-threshold 0] [--min-count 1]
                     [--pearson-threshold 0] [--seed N]

Co-activation graph (per layer; needs ``saew coactivation``): nodes are the live features
(n_f > 0), edges the pairs with NPMI > --npmi-threshold and n_ab >= --min-count, weighted by
NPMI (definitions in ``compute/graphs.py``). Writes, per layer,
``graph_nodes`` (n_active, degree, strength), ``graph_degrees`` (the degree distribution next
to a seeded random G(n, m) with the same nodes and edge count), and with --other-release,
``graph_divergence``: the Jensen-Shannon divergence (bits) between the two releases' degree
distributions at every layer both have, and the divergence of this release's distribution
from its random graph's as the baseline (seed 001 reports 0.15 vs ~0.73).

Communities (Leiden by default, seeded with --seed) of every layer's co-activation graph and
of the cross-layer correlation graph (needs ``saew correlate``; nodes (layer, feature), edges
the stored ``correlations`` with pearson > --pearson-threshold, weighted by pearson) go to
``communities`` (partition (release, graph)); ``modularity`` is that graph's weighted Newman
modularity, repeated on each of its rows.

The layers' graphs are built and partitioned by the executor (``--executor local|ray``,
``--workers``; ``compute.executor``), each worker reading its layer from the lake, and the
correlation graph, one long Leiden run, in one more worker beside them.

Units (``compute.units``): each co-activation layer (``layer=L``) and the correlation graph
(``graph=correlation``). A layer's rows commit as soon as it is done: its ``graph_nodes`` and
``graph_degrees`` partitions, and the ``communities`` (graph 'coactivation') and
``graph_divergence`` partitions, which hold every layer in one partition, rewritten with all
the layers so far; so a failure keeps the layers before it, and a re-run with the same
parameters computes only the missing units, keeping the stored rows of the others.
"""
from __future__ import annotations

import numpy as np

from saew.errors import BadInput
from saew.progress import progress
from saew.storage.saes import d_sae as sae_width
from saew.storage.saes import require_release

from saew.compute.activations import graphs
from saew.compute.options import add_executor_arguments
from saew.compute.units import Units, layer_unit
from saew.storage.reads import n_tokens

CORRELATION_UNIT = "graph=correlation"
COMMUNITY_COLUMNS = ("layer", "feature", "community", "modularity")
DIVERGENCE_COLUMNS = ("layer", "n_nodes", "n_edges", "js_divergence", "js_random_baseline",
                      "other_n_nodes", "other_n_edges")


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose graphs to analyse")
    p.add_argument("--other-release", default=None,
                   help="compare degree distributions with this release, layer by layer "
                        "(e.g. the same SAEs trained with another seed)")
    add_executor_arguments(p, "layers")
    p.add_argument("--graph", choices=["all", "coactivation", "correlation"], default="all",
                   help="which graphs (default all that have data)")
    p.add_argument("--algorithm", choices=["leiden", "louvain"], default="leiden",
                   help="community detection (modularity; default leiden)")
    p.add_argument("--npmi-threshold", type=float, default=0.0,
                   help="co-activation edges need NPMI above this, in [0, 1) (default 0)")
    p.add_argument("--min-count", type=int, default=1,
                   help="co-activation edges need at least this many shared tokens (default 1)")
    p.add_argument("--pearson-threshold", type=float, default=0.0,
                   help="correlation edges need pearson above this, in [0, 1) (default 0)")


def _check_args(args) -> None:
    if not 0.0 <= args.npmi_threshold < 1.0:
        raise BadInput(f"--npmi-threshold {args.npmi_threshold}: must be in [0, 1) "
                       f"(edge weights are the NPMI and modularity needs them positive)")
    if not 0.0 <= args.pearson_threshold < 1.0:
        raise BadInput(f"--pearson-threshold {args.pearson_threshold}: must be in [0, 1)")
    if args.min_count < 1:
        raise BadInput(f"--min-count {args.min_count}: must be at least 1")
    if args.other_release is not None and args.other_release == args.release:
        raise BadInput(f"--other-release {args.other_release!r}: same as --release")


def coactivation_layers(lake, release: str) -> list[int]:
    return lake.query("SELECT DISTINCT layer FROM coactivations WHERE release = ? ORDER BY layer",
                      [release]).column("layer").to_pylist()


def layer_graph(lake, release: str, layer: int, threshold: float, min_count: int) -> tuple[graphs.Graph, np.ndarray]:
    """One layer's co-activation graph and n_f for every feature (0 = dead)."""
    where = f"release {release!r} layer {layer}"
    n = n_tokens(lake, release, layer)
    if n is None:
        raise BadInput(f"{where}: no activation_sets row (N, the number of tokens)")
    width = sae_width(lake, release, layer)
    con = lake.connect()
    try:
        nf = con.execute("SELECT feature, count(*)::BIGINT AS n FROM activations WHERE release = ? "
                         "AND layer = ? AND value > 0 GROUP BY feature",
                         [release, int(layer)]).fetchnumpy()
        pairs = con.execute("SELECT feature_a, feature_b, n_ab FROM coactivations WHERE release = ? "
                            "AND layer = ?", [release, int(layer)]).fetchnumpy()
    finally:
        con.close()
    n_f = np.zeros(width, np.int64)
    if nf["feature"].size and int(nf["feature"].max()) >= width:
        raise BadInput(f"activations of {where}: feature {int(nf['feature'].max())} is outside d_sae {width}")
    n_f[nf["feature"].astype(np.int64)] = nf["n"]
    a = pairs["feature_a"].astype(np.int64)
    b = pairs["feature_b"].astype(np.int64)
    n_ab = pairs["n_ab"].astype(np.int64)
    if a.size and (max(int(a.max()), int(b.max())) >= width
                   or bool((n_ab > np.minimum(n_f[a], n_f[b])).any())):
        raise BadInput(f"coactivations of {where} do not agree with its activations; "
                       f"re-run `saew coactivation --release {release}`")
    if n_f.max(initial=0) > n:
        raise BadInput(f"{where}: a feature is active on more tokens than activation_sets' "
                       f"n_tokens = {n}")
    return graphs.coactivation_graph(a, b, n_ab, n_f, n, threshold, min_count), n_f


def _layer_job(home: str, release: str, layer: int, threshold: float, min_count: int,
               algorithm: str, seed: int):
    """One layer's co-activation graph statistics and communities (in a worker process or
    in-process): (layer, node ids, n_f, degree, strength, random-graph degrees, membership, Q)."""
    from saew.storage.lake import Lake

    g, n_f = layer_graph(Lake(home), release, layer, threshold, min_count)
    deg, strength = graphs.degree_strength(g)
    rdeg = graphs.random_graph_degrees(g.n_nodes, g.n_edges, np.random.default_rng([seed, layer]))
    member, q = graphs.communities(g, algorithm, seed)
    return layer, g.node_id, n_f, deg, strength, rdeg, g.n_edges, member, q


def _coactivation(args, ctx, layers: list[int], other: dict[int, np.ndarray], ex):
    """Yield, for each layer of ``layers`` as its job finishes (in order), its rows written:
    (layer, communities columns, graph_divergence row or None)."""
    lake, release = ctx.lake, args.release
    jobs = ((str(lake.home), release, int(layer), float(args.npmi_threshold), int(args.min_count),
             args.algorithm, int(ctx.seed)) for layer in layers)
    done = ex.map(_layer_job, jobs, len(layers))
    for layer, node_id, n_f, deg, strength, rdeg, n_edges, member, q in progress(
            done, total=len(layers), desc="co-activation graphs", unit="layer"):
        lake.write("graph_nodes", {"feature": node_id, "n_active": n_f[node_id],
                                   "degree": deg, "strength": strength},
                   release=release, layer=int(layer))
        top = int(max(deg.max(initial=0), rdeg.max(initial=0))) + 1
        counts = np.bincount(deg, minlength=top)
        rcounts = np.bincount(rdeg, minlength=top)
        seen = np.flatnonzero((counts > 0) | (rcounts > 0))
        lake.write("graph_degrees", {"degree": seen, "n_nodes": counts[seen],
                                     "n_nodes_random": rcounts[seen]},
                   release=release, layer=int(layer))
        comm = {"layer": np.full(len(node_id), layer, np.int32), "feature": node_id,
                "community": member, "modularity": np.full(len(node_id), q)}
        div = None
        if layer in other:
            p = graphs.degree_distribution(deg)
            div = {"layer": layer, "n_nodes": len(node_id), "n_edges": n_edges,
                   "js_divergence": graphs.js_divergence(p, graphs.degree_distribution(other[layer][0])),
                   "js_random_baseline": graphs.js_divergence(p, graphs.degree_distribution(rdeg)),
                   "other_n_nodes": int(other[layer][0].size), "other_n_edges": int(other[layer][1])}
        yield layer, comm, div


def _kept(lake, release: str, other_release: str | None, layers: list[int]) -> tuple[list[dict], list[dict]]:
    """The stored rows of co-activation layers an interrupted earlier run finished:
    (communities columns of each, graph_divergence rows)."""
    if not layers:
        return [], []
    ls = [int(L) for L in layers]
    comm = []
    if lake.has_data("communities"):
        t = lake.query(f"SELECT {', '.join(COMMUNITY_COLUMNS)} FROM communities WHERE release = ? AND "
                       "graph = 'coactivation' AND list_contains(?, layer) ORDER BY layer, feature",
                       [release, ls])
        if t.num_rows:
            comm = [{c: t.column(c).to_numpy() for c in COMMUNITY_COLUMNS}]
    div: list[dict] = []
    if other_release is not None and lake.has_data("graph_divergence"):
        div = lake.query(f"SELECT {', '.join(DIVERGENCE_COLUMNS)} FROM graph_divergence WHERE release = ? "
                         "AND other_release = ? AND list_contains(?, layer) ORDER BY layer",
                         [release, other_release, ls]).to_pylist()
    return comm, div


def _correlation(home: str, release: str, threshold: float, algorithm: str, seed: int) -> dict | None:
    """Communities of the cross-layer correlation graph of a release, or None without data
    (in a worker process beside the layer jobs, or in-process)."""
    from saew.storage.lake import Lake

    r = Lake(home).query("SELECT src_layer, src_feature, dst_layer, dst_feature, pearson FROM correlations "
                         "WHERE release = ? AND pearson > ?", [release, float(threshold)])
    if r.num_rows == 0:
        return None
    cols = {c: r.column(c).to_numpy() for c in r.column_names}
    key_src = cols["src_layer"].astype(np.int64) << 32 | cols["src_feature"].astype(np.int64)
    key_dst = cols["dst_layer"].astype(np.int64) << 32 | cols["dst_feature"].astype(np.int64)
    nodes, inv = np.unique(np.concatenate([key_src, key_dst]), return_inverse=True)
    m = key_src.size
    g = graphs.Graph(np.arange(nodes.size, dtype=np.int32), inv[:m], inv[m:],
                     cols["pearson"].astype(np.float64))
    member, q = graphs.communities(g, algorithm, seed)
    return {"layer": (nodes >> 32).astype(np.int32), "feature": (nodes & 0xFFFFFFFF).astype(np.int32),
            "community": member, "modularity": np.full(nodes.size, q)}


def run(args, ctx) -> str:
    _check_args(args)
    lake, release = ctx.lake, args.release
    require_release(lake, release)
    out: list[str] = []
    want_co = args.graph in ("all", "coactivation")
    want_corr = args.graph in ("all", "correlation")
    co_layers = coactivation_layers(lake, release) if want_co else []
    has_corr = want_corr and lake.query("SELECT 1 FROM correlations WHERE release = ? LIMIT 1",
                                        [release]).num_rows > 0
    if args.graph == "coactivation" and not co_layers:
        raise BadInput(f"--release {release!r}: no coactivations; run `saew coactivation` first")
    if args.graph == "correlation" and not has_corr:
        raise BadInput(f"--release {release!r}: no correlations; run `saew correlate` first")
    if not co_layers and not has_corr:
        raise BadInput(f"--release {release!r}: no coactivations or correlations; run "
                       f"`saew coactivation` and/or `saew correlate` first")
    other: dict[int, tuple[np.ndarray, int]] = {}
    common: list[int] = []
    if args.other_release is not None:
        require_release(lake, args.other_release)
        common = sorted(set(co_layers) & set(coactivation_layers(lake, args.other_release)))
        if not want_co or not common:
            raise BadInput(f"--other-release {args.other_release!r}: no layer with coactivations "
                           f"in both releases (run `saew coactivation` on both)")
    from saew.compute.options import executor_from_args

    ex = executor_from_args(args, "cpu")
    plan = Units(ctx, [layer_unit(L) for L in co_layers] + ([CORRELATION_UNIT] if has_corr else []))
    co_todo = [L for L in co_layers if layer_unit(L) in plan.todo]
    corr_todo = has_corr and CORRELATION_UNIT in plan.todo
    for layer in (L for L in common if L in co_todo):
        g, _ = layer_graph(lake, args.other_release, layer, args.npmi_threshold, args.min_count)
        other[layer] = (graphs.degree_strength(g)[0], g.n_edges)
    # the correlation graph (one long Leiden run) goes beside the per-layer jobs, in a worker
    # of its own, when there is a second core for them
    with ex.background(_correlation, str(lake.home), release, float(args.pearson_threshold),
                       args.algorithm, int(ctx.seed),
                       enabled=corr_todo and not ex.in_process(len(co_todo))) as corr_job:
        if co_layers:
            out += _write_coactivation(args, ctx, co_layers, co_todo, other, ex, plan)
        cols = corr_job.result() if corr_todo else None
    if cols is not None:
        lake.write("communities", cols | {"algorithm": [args.algorithm] * cols["layer"].size},
                   release=release, graph="correlation")
        plan.commit(CORRELATION_UNIT)
        n_comm = int(cols["community"].max()) + 1
        out.append(f"correlation graph: {cols['layer'].size} nodes in {n_comm} communities "
                   f"(modularity {cols['modularity'][0]:.3f})")
    elif has_corr:
        out.append("correlation graph: kept")
    return f"communities: release {release}: " + "; ".join(out) + ("\n" + plan.note() if plan.skipped else "")


def _write_coactivation(args, ctx, co_layers: list[int], co_todo: list[int], other: dict, ex,
                        plan: Units) -> list[str]:
    """Compute and write the co-activation layers of ``co_todo``, each committed as its unit
    (``communities`` and ``graph_divergence`` rewritten with every layer so far, the kept
    layers' stored rows included); the summary lines of every layer of ``co_layers``."""
    lake, release = ctx.lake, args.release
    comm, div_rows = _kept(lake, release, args.other_release, [L for L in co_layers if L not in co_todo])
    for layer, c, div in _coactivation(args, ctx, co_todo, other, ex):
        comm.append(c)
        if div is not None:
            div_rows.append(div)
        cols = {k: np.concatenate([x[k] for x in comm]) for k in COMMUNITY_COLUMNS}
        lake.write("communities", cols | {"algorithm": [args.algorithm] * cols["layer"].size},
                   release=release, graph="coactivation")
        if div_rows:
            div_rows.sort(key=lambda r: r["layer"])
            lake.write("graph_divergence", {
                **{k: [r[k] for r in div_rows] for k in DIVERGENCE_COLUMNS},
                "npmi_threshold": [float(args.npmi_threshold)] * len(div_rows),
                "min_count": [int(args.min_count)] * len(div_rows)},
                release=release, other_release=args.other_release)
        plan.commit(layer_unit(layer))
    out = [f"co-activation graphs of {len(co_layers)} layer(s)"]
    if div_rows:
        js = ", ".join(f"L{r['layer']} {r['js_divergence']:.3f} (random {r['js_random_baseline']:.3f})"
                       for r in div_rows)
        out.append(f"JS divergence vs {args.other_release}: {js}")
    return out
