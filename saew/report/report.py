"""``saew plot`` and ``saew report``: PNG plots and one static HTML report of a release.

Everything is read from the catalog (``<home>/saew.duckdb``: the lake views and the dbt
marts) through SQL; aggregation (quantiles, histograms, the "other" bucket of a Sankey) is
done in SQL too, so no metric is recomputed in Python. A plot whose mart or table is missing
or empty is skipped with a note naming the step to run ("no data: run saew cluster").

Output: ``<home>/reports/<release>/`` holding the PNGs (and ``index.html`` for ``report``).
The folder is built under a temporary name beside it and swapped in as a whole; each PNG is
itself written to a temporary name and renamed. The HTML is self-contained: no scripts, no
server, no network, every asset a local file beside it.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from saew.errors import BadInput

SANKEY_TOP = 12             # clusters drawn per side of a Sankey; the rest are lumped as "other"
DEFAULT_SANKEY_PAIRS = 4    # evenly spaced layer pairs when --pairs is not given
UMAP_MAX_LAYERS = 12
UMAP_MAX_POINTS = 4000      # per layer, a deterministic subsample (feature % step = 0)
DEGREE_MAX_LAYERS = 12
TABLE_ROWS = 25
METHOD_PREFERENCE = ("folded", "folded-decoder", "unfolded", "cosine")
SOLVER_PREFERENCE = ("emd", "sinkhorn")
BASELINE_METHODS = ("random", "identity")


# ---------------------------------------------------------------------------- CLI
def _add_common(p) -> None:
    p.add_argument("--release", required=True, help="release to plot")
    p.add_argument("--pairs", default=None,
                   help="layer pairs for the Sankey diagrams, e.g. 5-6,8-9 (default: "
                        f"{DEFAULT_SANKEY_PAIRS} evenly spaced adjacent pairs)")


def add_arguments_plot(p) -> None:
    _add_common(p)


def add_arguments_report(p) -> None:
    _add_common(p)


def add_arguments(p) -> None:  # the CLI falls back to this name
    _add_common(p)


def run_plot(args, ctx) -> str:
    res = build(ctx, args.release, args.pairs, html_report=False)
    lines = [f"{len(res.files)} plots in {res.folder}"]
    lines += [f"  {it.title}: {it.note}" for it in res.items if it.note]
    return "\n".join(lines)


def run_report(args, ctx) -> str:
    res = build(ctx, args.release, args.pairs, html_report=True)
    return str(res.folder / "index.html")


def run(args, ctx) -> str:
    return run_report(args, ctx) if args._words[-1] == "report" else run_plot(args, ctx)


# ---------------------------------------------------------------------------- reading
class Reader:
    """SQL on the catalog, returning columns as numpy arrays (NULL -> nan / None)."""

    def __init__(self, con):
        self.con = con
        rows = con.sql("SELECT DISTINCT table_name FROM information_schema.tables").fetchall()
        self.names = {r[0] for r in rows}

    def has(self, name: str) -> bool:
        return name in self.names

    def cols(self, sql: str, params: dict | None = None) -> dict[str, np.ndarray]:
        raw = self.con.sql(sql, params=params or None).fetchnumpy()
        out: dict[str, np.ndarray] = {}
        for k, v in raw.items():
            if isinstance(v, np.ma.MaskedArray):
                if v.dtype.kind in "iuf":
                    v = v.astype(float).filled(np.nan)
                elif v.dtype.kind == "b":
                    v = v.filled(False)
                else:
                    v = v.astype(object).filled(None)
            out[k] = np.asarray(v)
        return out

    def rows(self, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
        rel = self.con.sql(sql, params=params or None)
        return list(rel.columns), rel.fetchall()


def _n(c: dict[str, np.ndarray]) -> int:
    return len(next(iter(c.values()))) if c else 0


# ---------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Item:
    """One plot of the report: a PNG file, or a note saying why it is missing."""
    section: str
    title: str
    caption: str
    file: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Table:
    section: str
    title: str
    caption: str
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class Result:
    folder: Path
    items: list[Item]
    tables: list[Table]

    @property
    def files(self) -> list[str]:
        return [it.file for it in self.items if it.file]


@dataclass(frozen=True)
class Setup:
    release: str
    layers: list[int]
    pairs: list[tuple[int, int]]        # Sankey pairs
    out: Path


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")


def _missing(r: Reader, tables: Sequence[str], step: str) -> str | None:
    """A "no data" note when a table/mart is absent (dbt not run), else None."""
    absent = [t for t in tables if not r.has(t)]
    if absent:
        run = "saew build" if any(t.startswith(("fct_", "dim_")) for t in absent) else step
        return f"no data: {', '.join(absent)} not in the catalog (run {run})"
    return None


def _link_parts(link: str) -> tuple[str, str, str]:
    kind, _, rest = link.partition("/")
    space, _, method = rest.partition("/")
    return kind, space, method


def _is_baseline(link: str) -> bool:
    return _link_parts(link)[2] in BASELINE_METHODS


def _preferred(links: Sequence[str], kind: str, space: str | None) -> str | None:
    """The link drawn by default: same space first, then the preferred method/solver."""
    prefs = METHOD_PREFERENCE if kind == "match" else SOLVER_PREFERENCE
    cands = [l for l in links if _link_parts(l)[0] == kind and not _is_baseline(l)]
    same = [l for l in cands if _link_parts(l)[1] == space] or cands
    if not same:
        return None
    return sorted(same, key=lambda l: (prefs.index(_link_parts(l)[2]) if _link_parts(l)[2] in prefs
                                       else len(prefs), l))[0]


def _null_link(links: Sequence[str], space: str) -> str | None:
    nulls = [l for l in links if _link_parts(l)[0] == "match" and _link_parts(l)[2] == "random"]
    same = [l for l in nulls if _link_parts(l)[1] == space]
    return (same or nulls or [None])[0]


def _evenly(values: Sequence, k: int) -> list:
    if len(values) <= k:
        return list(values)
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]


def parse_pairs(text: str | None, layers: list[int], release: str) -> list[tuple[int, int]]:
    """``"5-6,8-9"`` -> [(5, 6), (8, 9)]; each pair must be adjacent ingested layers."""
    adjacent = list(zip(layers[:-1], layers[1:]))
    if text is None:
        return _evenly(adjacent, DEFAULT_SANKEY_PAIRS)
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", part)
        if not m:
            raise BadInput(f"--pairs {text!r}: expected layer pairs like 5-6,8-9, got {part!r}")
        pair = (int(m.group(1)), int(m.group(2)))
        if pair not in adjacent:
            raise BadInput(f"--pairs {text!r}: {pair[0]}-{pair[1]} is not a pair of adjacent layers of "
                           f"release {release!r} (layers: {', '.join(map(str, layers))})")
        if pair not in out:
            out.append(pair)
    return out


# ---------------------------------------------------------------------------- plots
def plot_sankeys(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Cluster flows"
    title = "Sankey flows of clusters"
    cap = ("Each panel is one layer pair l -> l': boxes on the left are clusters at l, on the right "
           "clusters at l'; a band's thickness is the flow N_ab between them (matched feature pairs "
           "for match links, transported mass in features for transport links), from "
           "fct_cluster_transitions. Box height = the cluster's total flow, so members that leak "
           "(to noise, undescribed or unmatched) are not drawn: see the leak curves. The "
           f"{SANKEY_TOP} largest clusters of each side are drawn; the rest are lumped into 'other' "
           "(grey). A band that stays one colour and lands in one box is a surviving cluster; one "
           "box fanning into several is a split; several bands into one box is a merge.")
    miss = _missing(r, ["fct_cluster_transitions"], "saew build")
    if miss:
        return [Item(sec, title, cap, note=miss)]
    if not s.pairs:
        return [Item(sec, title, cap, note="no data: the release has a single layer (no layer pairs)")]
    links = r.rows("SELECT DISTINCT cluster_space, link FROM fct_cluster_transitions WHERE release = $r "
                   "ORDER BY ALL", {"r": s.release})[1]
    if not links:
        return [Item(sec, title, cap, note="no data: run saew cluster, then saew match and/or "
                                           "saew transport, then saew build")]
    by_space: dict[str, list[str]] = {}
    for space, link in links:
        by_space.setdefault(space, []).append(link)
    chosen = [(space, l) for space, ls in by_space.items()
              for l in (_preferred(ls, "match", space), _preferred(ls, "transport", space)) if l]
    if not chosen:
        return [Item(sec, title, cap, note="no data: only null-model links (random) have flows; "
                                           "run saew match or saew transport, then saew build")]
    src = [a for a, _ in s.pairs]
    items: list[Item] = []
    for space, link in chosen:
        c = sankey_flows(r, s.release, space, link, src, SANKEY_TOP)
        panels = []
        for a, b in s.pairs:
            m = c["src_layer"] == a
            panels.append((f"layer {a} -> {b}", {k: v[m] for k, v in c.items()}))
        name = f"sankey_{_slug(space)}_{_slug(link)}.png"
        plots.sankey_figure(panels, f"{link}, {space} clusters", s.out / name)
        items.append(Item(sec, f"Sankey: {link} ({space} clusters)", cap, file=name))
    return items


def sankey_flows(r: Reader, release: str, space: str, link: str, src_layers: list[int],
                 top: int) -> dict[str, np.ndarray]:
    """Flows of one link for the given source layers, keeping the ``top`` clusters of each side
    by total flow and lumping the others into one ``plots.OTHER`` node (flows are summed, so
    every layer pair's total is unchanged). Columns src_layer, dst_layer, src, dst, flow."""
    from saew.report.plots import OTHER

    return r.cols(f"""
        WITH t AS (
            SELECT src_layer, dst_layer, src_cluster, dst_cluster, flow FROM fct_cluster_transitions
            WHERE release = $r AND cluster_space = $s AND link = $l AND flow > 0
              AND list_contains($src, src_layer)),
        sr AS (SELECT src_layer, src_cluster, row_number() OVER (PARTITION BY src_layer
                      ORDER BY sum(flow) DESC, src_cluster) AS k FROM t GROUP BY src_layer, src_cluster),
        dr AS (SELECT src_layer, dst_cluster, row_number() OVER (PARTITION BY src_layer
                      ORDER BY sum(flow) DESC, dst_cluster) AS k FROM t GROUP BY src_layer, dst_cluster)
        SELECT t.src_layer, any_value(t.dst_layer) AS dst_layer,
               CASE WHEN sr.k <= {int(top)} THEN t.src_cluster ELSE {OTHER} END AS src,
               CASE WHEN dr.k <= {int(top)} THEN t.dst_cluster ELSE {OTHER} END AS dst,
               sum(t.flow) AS flow
        FROM t JOIN sr USING (src_layer, src_cluster) JOIN dr USING (src_layer, dst_cluster)
        GROUP BY 1, 3, 4 ORDER BY 1, 3, 4""", {"r": release, "s": space, "l": link, "src": src_layers})


def _evolution_rows(r: Reader, release: str) -> dict[str, np.ndarray]:
    return r.cols("SELECT * FROM fct_layer_evolution WHERE release = $r ORDER BY cluster_space, "
                  "(link LIKE '%/random'), link, src_layer", {"r": release})


def plot_evolution(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Evolution"
    cap_rates = ("Per layer pair l -> l' (x = l), for every link (coloured) and the random-match null "
                 "model (dashed grey), from fct_layer_evolution: survive = share of source clusters "
                 "whose largest share M_ab >= 0.5; split = share with at least two destinations "
                 "M_ab >= 0.2; vanish = share with max M_ab < 0.2; merge = share of destination "
                 "clusters fed by at least two sources with M_ab >= 0.2; birth = share of destination "
                 "clusters getting < 0.2 of their size from any one source; mean leak = mean share of "
                 "a cluster's members whose flow does not reach a cluster at l' (noise, undescribed, "
                 "unmatched). A link above the dashed null is more structured than chance.")
    cap_h = ("Entropy (nats) of where a source cluster's flow goes, averaged over source clusters: "
             "H_cond over the destination clusters only, H_aug with leak as one more outcome; and the "
             "mutual information between source and destination cluster (MI_cond over flows, MI_aug "
             "with the leak column, weighted by cluster size), from fct_layer_evolution. Low entropy "
             "and high MI mean clusters keep their identity across the pair; the dashed null line "
             "shows what random matching gives.")
    miss = _missing(r, ["fct_layer_evolution"], "saew build")
    if miss:
        return [Item(sec, "Evolution curves", cap_rates, note=miss),
                Item(sec, "Entropy and mutual information", cap_h, note=miss)]
    c = _evolution_rows(r, s.release)
    if _n(c) == 0:
        note = "no data: run saew cluster and saew match (incl. --method random), then saew build"
        return [Item(sec, "Evolution curves", cap_rates, note=note),
                Item(sec, "Entropy and mutual information", cap_h, note=note)]
    items = []
    for space in dict.fromkeys(c["cluster_space"].tolist()):
        m = c["cluster_space"] == space
        cs = {k: v[m] for k, v in c.items()}
        name = f"evolution_{_slug(space)}.png"
        plots.line_panels(cs, "src_layer", "link", [
            ("survive_rate", "survive"), ("split_rate", "split"), ("merge_rate", "merge"),
            ("vanish_rate", "vanish"), ("birth_rate", "birth"), ("mean_leak", "mean leak")],
            f"Cluster fates per layer pair ({space} clusters)", s.out / name)
        items.append(Item(sec, f"Evolution curves ({space} clusters)", cap_rates, file=name))
        name = f"entropy_{_slug(space)}.png"
        plots.line_panels(cs, "src_layer", "link", [
            ("h_cond_mean", "mean H_cond (nats)"), ("h_aug_mean", "mean H_aug (nats)"),
            ("mi_cond", "MI_cond (nats)"), ("mi_aug", "MI_aug (nats)")],
            f"Entropy and mutual information per layer pair ({space} clusters)", s.out / name, ncol=4)
        items.append(Item(sec, f"Entropy and mutual information ({space} clusters)", cap_h, file=name))
    return items


def plot_cluster_counts(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Clusters"
    title = "Clusters per layer"
    cap = ("Per layer and cluster space, from the clusters table: the number of clusters (labels >= "
           "0), the mean cluster size in features, and the share of features HDBSCAN left as noise "
           "(label -1). More, smaller clusters at a layer mean a finer-grained feature geometry there.")
    c = r.cols("""
        SELECT space, layer,
               count(DISTINCT cluster) FILTER (WHERE cluster >= 0) AS n_clusters,
               count(*) FILTER (WHERE cluster >= 0)
                 / nullif(count(DISTINCT cluster) FILTER (WHERE cluster >= 0), 0) AS mean_size,
               avg(CASE WHEN cluster = -1 THEN 1.0 ELSE 0.0 END) AS noise_frac
        FROM clusters WHERE release = $r GROUP BY ALL ORDER BY space, layer""", {"r": s.release})
    if _n(c) == 0:
        return [Item(sec, title, cap, note="no data: run saew cluster")]
    name = "clusters_per_layer.png"
    plots.line_panels(c, "layer", "space", [("n_clusters", "number of clusters"),
                                            ("mean_size", "mean cluster size (features)"),
                                            ("noise_frac", "noise share")],
                      "Clusters per layer", s.out / name, xlabel="layer")
    return [Item(sec, title, cap, file=name)]


def plot_umap(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Clusters"
    cap = ("The 2-D UMAP of each layer's features (decoder rows, or description embeddings for the "
           "text space), coloured by HDBSCAN cluster; noise is light grey. Colours are per cluster id "
           "and do not carry over between layers. Tight, well-separated blobs are clean clusters. "
           f"At most {UMAP_MAX_LAYERS} layers (evenly spaced) and {UMAP_MAX_POINTS} features per "
           "layer (every k-th feature) are drawn.")
    spaces = r.cols("SELECT space, layer, count(*) AS n FROM clusters WHERE release = $r AND x IS NOT NULL "
                    "AND y IS NOT NULL GROUP BY ALL ORDER BY space, layer", {"r": s.release})
    if _n(spaces) == 0:
        return [Item(sec, "UMAP of clusters", cap, note="no data: run saew cluster (clusters with x, y)")]
    items = []
    for space in dict.fromkeys(spaces["space"].tolist()):
        m = spaces["space"] == space
        layers = _evenly([int(v) for v in spaces["layer"][m]], UMAP_MAX_LAYERS)
        step = max(1, int(np.ceil(spaces["n"][m].max() / UMAP_MAX_POINTS)))
        c = r.cols("SELECT layer, cluster, x, y FROM clusters WHERE release = $r AND space = $s "
                   "AND x IS NOT NULL AND y IS NOT NULL AND list_contains($l, layer) "
                   "AND feature % $k = 0 ORDER BY layer, feature",
                   {"r": s.release, "s": space, "l": layers, "k": step})
        name = f"umap_{_slug(space)}.png"
        plots.umap_figure(c, layers, f"UMAP of {space}-space features, coloured by cluster", s.out / name)
        items.append(Item(sec, f"UMAP of clusters ({space} space)", cap, file=name))
    return items


def plot_coactivation(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Co-activation"
    cap_lift = ("Do features of one cluster fire together? Per layer, the median (line) and "
                "interquartile range (band) over clusters with at least 4 live members, from "
                "fct_cluster_coactivation: Jaccard lift = mean pairwise Jaccard of a cluster's members "
                "divided by the same mean over all live features of the layer (1 = no better than a "
                "random set, dashed), and NPMI delta = mean pairwise NPMI minus that background "
                "(0 = random). Above the dashed line, clusters are co-activation units.")
    cap_deg = ("Degree distribution of each layer's co-activation graph (features are nodes; an edge "
               "joins two features with NPMI > 0 in fct_coactivation_pairs), as the share of features "
               "with degree >= d on log-log axes; features with no edge are not shown. A straight "
               "tail means a heavy-tailed (hub-dominated) graph.")
    items: list[Item] = []
    miss = _missing(r, ["fct_cluster_coactivation"], "saew build")
    c = None if miss else r.cols("""
        SELECT space, layer,
               quantile_cont(jaccard_lift, [0.25, 0.5, 0.75]) AS jaccard_lift_q,
               quantile_cont(npmi_delta, [0.25, 0.5, 0.75]) AS npmi_delta_q
        FROM fct_cluster_coactivation
        WHERE release = $r AND isfinite(jaccard_lift) AND isfinite(npmi_delta)
        GROUP BY ALL ORDER BY space, layer""", {"r": s.release})
    if c is None or _n(c) == 0:
        items.append(Item(sec, "Co-activation of clusters", cap_lift,
                          note=miss or "no data: run saew harvest, saew cluster and saew coactivation, "
                                       "then saew build"))
    else:
        name = "coactivation_lift.png"
        plots.band_panels(c, "space", [("jaccard_lift", "Jaccard lift", 1.0), ("npmi_delta", "NPMI delta", 0.0)],
                          "Co-activation within clusters against a random set", s.out / name)
        items.append(Item(sec, "Co-activation of clusters", cap_lift, file=name))
    miss = _missing(r, ["fct_coactivation_pairs"], "saew build")
    c = None
    if not miss:
        layers = r.cols("SELECT DISTINCT layer FROM fct_coactivation_pairs WHERE release = $r ORDER BY layer",
                        {"r": s.release})["layer"]
        layers = _evenly([int(v) for v in layers], DEGREE_MAX_LAYERS)
        c = r.cols("""
            WITH e AS (
                SELECT layer, feature_a AS f FROM fct_coactivation_pairs
                WHERE release = $r AND npmi > 0 AND list_contains($l, layer)
                UNION ALL
                SELECT layer, feature_b AS f FROM fct_coactivation_pairs
                WHERE release = $r AND npmi > 0 AND list_contains($l, layer)),
            d AS (SELECT layer, f, count(*) AS degree FROM e GROUP BY ALL),
            h AS (SELECT layer, degree, count(*) AS n FROM d GROUP BY ALL)
            SELECT layer, degree, sum(n) OVER (PARTITION BY layer ORDER BY degree DESC)
                                  / sum(n) OVER (PARTITION BY layer) AS ccdf
            FROM h ORDER BY layer, degree""", {"r": s.release, "l": layers})
    if c is None or _n(c) == 0:
        items.append(Item(sec, "Co-activation graph degrees", cap_deg,
                          note=miss or "no data: run saew harvest and saew coactivation, then saew build"))
    else:
        name = "coactivation_degree.png"
        plots.ccdf_figure(c, "Degree distribution of the co-activation graphs", s.out / name)
        items.append(Item(sec, "Co-activation graph degrees", cap_deg, file=name))
    return items


def plot_matching(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Matching"
    cap_box = ("Distribution of the matched pairs' cost and cosine per layer pair (x = source layer) "
               "and method, from the matches table: box = quartiles, line = median, whiskers = 5th "
               "and 95th percentiles. Cost units differ by method (folded and random both use the "
               "folded cost, so they compare directly); cosine is always the cosine of the two "
               "features' vectors in the match space. Random (grey) is the null model.")
    cap_pers = ("How many consecutive matching steps a feature keeps a cosine >= 0.7 (its persistence, "
                "from fct_feature_persistence), counted over all features of all layers, per match link "
                "(log scale). The random link (grey) is the null model: a real link's long tail shows "
                "features that persist through many layers.")
    cap_rec = ("Explained variance of layer l' hidden states reconstructed from layer l's SAE "
               "activations carried through the matching (x_hat = decode_l'(P f_l)), per layer pair "
               "and method, from the reconstruction table; the identity (no permutation) and random "
               "baselines are dashed. Higher than the baselines means the matching carries meaning.")
    items: list[Item] = []
    c = r.cols("""
        SELECT space, method, src_layer,
               quantile_cont(cost, [0.05, 0.25, 0.5, 0.75, 0.95]) AS cost_q,
               quantile_cont(cosine, [0.05, 0.25, 0.5, 0.75, 0.95]) AS cosine_q
        FROM matches WHERE release = $r GROUP BY space, method, src_layer
        ORDER BY space, method IN ('random', 'identity'), method, src_layer""", {"r": s.release})
    if _n(c) == 0:
        items.append(Item(sec, "Match cost and cosine", cap_box, note="no data: run saew match"))
    for space in dict.fromkeys(c["space"].tolist()) if _n(c) else []:
        m = c["space"] == space
        name = f"matching_{_slug(space)}.png"
        plots.box_panels({k: v[m] for k, v in c.items()}, "method",
                         [("cost", "matching cost"), ("cosine", "cosine of matched features")],
                         f"Matched pairs per layer pair ({space} space)", s.out / name)
        items.append(Item(sec, f"Match cost and cosine ({space} space)", cap_box, file=name))
    miss = _missing(r, ["fct_feature_persistence"], "saew build")
    c = None if miss else r.cols(
        "SELECT link, persistence, count(*) AS n FROM fct_feature_persistence WHERE release = $r "
        "AND persistence IS NOT NULL GROUP BY link, persistence ORDER BY (link LIKE '%/random'), link, persistence",
        {"r": s.release})
    if c is None or _n(c) == 0:
        items.append(Item(sec, "Persistence histogram", cap_pers,
                          note=miss or "no data: run saew match, then saew build"))
    else:
        name = "persistence.png"
        plots.histogram_bars(c, "link", "persistence", "n", "Feature persistence",
                             "persistence (consecutive steps with cosine >= 0.7)", s.out / name)
        items.append(Item(sec, "Persistence histogram", cap_pers, file=name))
    c = r.cols("SELECT space || '/' || method AS series, src_layer, explained_variance FROM reconstruction "
               "WHERE release = $r ORDER BY method IN ('random', 'identity'), series, src_layer",
               {"r": s.release})
    if _n(c) == 0:
        items.append(Item(sec, "Reconstruction through matches", cap_rec, note="no data: run saew evaluate"))
    else:
        name = "reconstruction.png"
        plots.line_panels(c, "src_layer", "series", [("explained_variance", "explained variance")],
                          "Reconstruction through matches", s.out / name, ncol=1)
        items.append(Item(sec, "Reconstruction through matches", cap_rec, file=name))
    return items


def plot_training(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec = "Training"
    title = "SAE training curves"
    cap = ("Training of each layer's SAE (one line per layer, light = deep), from training_log: the "
           "fraction of variance unexplained of the reconstruction, the mean number of active "
           "features per token (L0), and the share of dead features, against tokens seen. Curves "
           "that flatten have converged.")
    c = r.cols("SELECT layer, coalesce(tokens_seen, step)::DOUBLE AS x, fvu, l0, dead_frac FROM training_log "
               "WHERE release = $r ORDER BY layer, step", {"r": s.release})
    if _n(c) == 0:
        return [Item(sec, title, cap, note="no data: run saew train (SAEs ingested from elsewhere have no curves)")]
    name = "training.png"
    plots.training_figure(c, "SAE training curves", s.out / name)
    return [Item(sec, title, cap, file=name)]


PLOTTERS: list[Callable[[Reader, Setup], list[Item]]] = [
    plot_sankeys, plot_evolution, plot_cluster_counts, plot_umap, plot_coactivation, plot_matching,
    plot_training]


# ---------------------------------------------------------------------------- tables
def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def table_release(r: Reader, s: Setup) -> Table:
    cols, rows = r.rows("""
        SELECT layer, model, hook, architecture, d_in, d_sae, k, source_format
        FROM saes WHERE release = $r ORDER BY layer""", {"r": s.release})
    return Table("Release", "SAEs of the release", "One row per ingested SAE (saes table).", cols, rows)


def table_evolution(r: Reader, s: Setup) -> Table:
    cap = ("Rates per layer pair for the default link next to the random-match null model (fct_layer_evolution).")
    title = "Layer evolution against the null"
    miss = _missing(r, ["fct_layer_evolution"], "saew build")
    if miss:
        return Table("Evolution", title, cap, note=miss)
    links = r.rows("SELECT DISTINCT cluster_space, link FROM fct_layer_evolution WHERE release = $r ORDER BY ALL",
                   {"r": s.release})[1]
    if not links:
        return Table("Evolution", title, cap, note="no data: run saew cluster and saew match, then saew build")
    spaces = list(dict.fromkeys(sp for sp, _ in links))
    space = "decoder" if "decoder" in spaces else spaces[0]
    ls = [l for sp, l in links if sp == space]
    link = _preferred(ls, "match", space) or _preferred(ls, "transport", space) or ls[0]
    if r.has("fct_layer_evolution_vs_null"):
        cols, rows = r.rows("""
            SELECT src_layer || ' -> ' || dst_layer AS pair, survive_rate AS survive,
                   null_survive_rate AS "survive (null)", split_rate AS split, null_split_rate AS "split (null)",
                   merge_rate AS merge, null_merge_rate AS "merge (null)", vanish_rate AS vanish,
                   null_vanish_rate AS "vanish (null)", mean_leak AS leak, null_mean_leak AS "leak (null)",
                   mi_aug AS "MI_aug", null_mi_aug AS "MI_aug (null)", any_value(null_link) OVER () AS null_link
            FROM fct_layer_evolution_vs_null
            WHERE release = $r AND cluster_space = $s AND link = $l ORDER BY src_layer""",
                            {"r": s.release, "s": space, "l": link})
        if rows:
            null = rows[0][-1]
            return Table("Evolution", f"{title}: {link} vs {null} ({space} clusters)",
                         cap + " From fct_layer_evolution_vs_null.", cols[:-1], [row[:-1] for row in rows])
    null = _null_link(ls, space)
    cols, rows = r.rows("""
        SELECT e.src_layer || ' -> ' || e.dst_layer AS pair, e.n_src_clusters AS clusters,
               e.survive_rate AS survive, n.survive_rate AS "survive (null)",
               e.split_rate AS split, n.split_rate AS "split (null)",
               e.merge_rate AS merge, n.merge_rate AS "merge (null)",
               e.vanish_rate AS vanish, n.vanish_rate AS "vanish (null)",
               e.mean_leak AS leak, n.mean_leak AS "leak (null)"
        FROM fct_layer_evolution e
        LEFT JOIN fct_layer_evolution n ON n.release = e.release AND n.cluster_space = e.cluster_space
             AND n.src_layer = e.src_layer AND n.link = $null
        WHERE e.release = $r AND e.cluster_space = $s AND e.link = $l ORDER BY e.src_layer""",
                        {"r": s.release, "s": space, "l": link, "null": null or ""})
    return Table("Evolution", f"{title}: {link} vs {null or 'no null link'} ({space} clusters)", cap, cols, rows)


def table_fates(r: Reader, s: Setup) -> Table:
    cap = ("The largest source clusters at the Sankey layer pairs and what happens to them (fct_cluster_fates): "
           "purity = largest share M_ab going to one destination cluster, leak = share not reaching any, "
           "H_cond = entropy of the destinations (nats). Label = description of the cluster's most "
           "confident member.")
    title = "Cluster fates"
    miss = _missing(r, ["fct_cluster_fates"], "saew build")
    if miss:
        return Table("Cluster flows", title, cap, note=miss)
    links = r.rows("SELECT DISTINCT cluster_space, link FROM fct_cluster_fates WHERE release = $r ORDER BY ALL",
                   {"r": s.release})[1]
    if not links:
        return Table("Cluster flows", title, cap, note="no data: run saew cluster and saew match, then saew build")
    spaces = list(dict.fromkeys(sp for sp, _ in links))
    space = "decoder" if "decoder" in spaces else spaces[0]
    ls = [l for sp, l in links if sp == space]
    link = _preferred(ls, "match", space) or _preferred(ls, "transport", space) or ls[0]
    desc = "dim_features" if r.has("dim_features") else "descriptions"
    per_pair = max(4, TABLE_ROWS // max(len(s.pairs), 1))
    cols, rows = r.rows(f"""
        WITH f AS (
            SELECT *, row_number() OVER (PARTITION BY src_layer ORDER BY size DESC, src_cluster) AS k
            FROM fct_cluster_fates
            WHERE release = $r AND cluster_space = $s AND link = $l AND list_contains($src, src_layer)),
        lab AS (
            SELECT c.layer, c.cluster, arg_max(d.description, coalesce(c.probability, 0)) AS label
            FROM clusters c JOIN {desc} d ON d.release = c.release AND d.layer = c.layer AND d.feature = c.feature
            WHERE c.release = $r AND c.space = $s AND c.cluster >= 0 AND d.description IS NOT NULL
              AND list_contains($src, c.layer)
            GROUP BY ALL)
        SELECT f.src_layer AS layer, f.src_cluster AS cluster, f.size,
               coalesce(nullif(concat_ws(', ', CASE WHEN f.survive THEN 'survive' END,
                                         CASE WHEN f.split THEN 'split' END,
                                         CASE WHEN f.vanish THEN 'vanish' END), ''), 'partial') AS fate,
               f.purity, f.leak, f.h_cond AS "H_cond", lab.label
        FROM f LEFT JOIN lab ON lab.layer = f.src_layer AND lab.cluster = f.src_cluster
        WHERE f.k <= {per_pair} ORDER BY f.src_layer, f.size DESC, f.src_cluster""",
                        {"r": s.release, "s": space, "l": link, "src": [a for a, _ in s.pairs]})
    return Table("Cluster flows", f"{title}: {link} ({space} clusters)", cap, cols, rows)


def table_persistent(r: Reader, s: Setup) -> Table:
    cap = ("Features whose chain of matches keeps a cosine >= 0.7 for the most consecutive layers "
           "(fct_feature_persistence), with their descriptions.")
    title = "Most persistent features"
    miss = _missing(r, ["fct_feature_persistence"], "saew build")
    if miss:
        return Table("Matching", title, cap, note=miss)
    links = [l for (l,) in r.rows("SELECT DISTINCT link FROM fct_feature_persistence WHERE release = $r "
                                  "ORDER BY link", {"r": s.release})[1]]
    link = _preferred(links, "match", "decoder")
    if link is None:
        return Table("Matching", title, cap, note="no data: run saew match, then saew build")
    desc = "dim_features" if r.has("dim_features") else "descriptions"
    cols, rows = r.rows(f"""
        SELECT p.layer, p.feature, p.persistence, d.description
        FROM fct_feature_persistence p
        LEFT JOIN {desc} d ON d.release = p.release AND d.layer = p.layer AND d.feature = p.feature
        WHERE p.release = $r AND p.link = $l
        ORDER BY p.persistence DESC, p.layer, p.feature LIMIT {TABLE_ROWS}""", {"r": s.release, "l": link})
    return Table("Matching", f"{title} ({link})", cap, cols, rows)


TABLES: list[Callable[[Reader, Setup], Table]] = [table_release, table_evolution, table_fates, table_persistent]


# ---------------------------------------------------------------------------- build
def _guard(fn, r: Reader, s: Setup, fallback):
    """Run one plot/table; a failure becomes a note (the report never crashes on one plot)."""
    import duckdb

    try:
        return fn(r, s)
    except duckdb.Error as e:
        msg = str(e).splitlines()[0]
    except (ValueError, TypeError, IndexError, KeyError) as e:
        msg = f"{type(e).__name__}: {e}"
    print(f"saew: warning: {fn.__name__}: {msg}", file=sys.stderr)
    return fallback(f"could not draw: {msg}")


def build(ctx, release: str, pairs: str | None, html_report: bool) -> Result:
    """Draw every plot (and the HTML) into a fresh folder, then swap it in for the old one."""
    from saew.storage import catalog
    from saew.storage.saes import require_release

    layers = require_release(ctx.lake, release)
    sankey_pairs = parse_pairs(pairs, layers, release)
    reports = ctx.home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    tmp = reports / f".{release}.{ctx.run_id}.tmp"
    final = reports / release
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        con = catalog.connect(ctx.lake, read_only=True)
        try:
            r = Reader(con)
            s = Setup(release, layers, sankey_pairs, tmp)
            items: list[Item] = []
            for fn in PLOTTERS:
                items += _guard(fn, r, s, lambda note, fn=fn: [Item(_section_of(fn), fn.__name__[5:], "", note=note)])
            tables = [_guard(fn, r, s, lambda note, fn=fn: Table("Tables", fn.__name__[6:], "", note=note))
                      for fn in TABLES] if html_report else []
        finally:
            con.close()
        if html_report:
            page = render_html(release, layers, items, tables, ctx.run_id)
            index = tmp / "index.html"
            index.with_name(".index.html.tmp").write_text(page, encoding="utf-8")
            os.replace(index.with_name(".index.html.tmp"), index)
        _swap(tmp, final, reports / f".{release}.{ctx.run_id}.old")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Result(final, items, tables)


def _section_of(fn) -> str:
    return {"plot_sankeys": "Cluster flows", "plot_evolution": "Evolution", "plot_cluster_counts": "Clusters",
            "plot_umap": "Clusters", "plot_coactivation": "Co-activation", "plot_matching": "Matching",
            "plot_training": "Training"}.get(fn.__name__, "Other")


def _swap(new: Path, final: Path, old: Path) -> None:
    """Replace the folder ``final`` by ``new`` as a whole (two renames, then drop the old one)."""
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- HTML
SECTION_ORDER = ["Release", "Evolution", "Cluster flows", "Clusters", "Co-activation", "Matching", "Training",
                 "Tables", "Other"]

CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; background: #fff; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { font-size: 0.9em; color: #444; max-width: 1100px; }
.nodata { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
nav a { margin-right: 1em; }
"""


def _h(s) -> str:
    return html.escape(str(s), quote=True)


def _table_html(t: Table) -> str:
    out = [f"<h3>{_h(t.title)}</h3>", f'<p class="caption">{_h(t.caption)}</p>']
    if t.note:
        return "\n".join(out + [f'<p class="nodata">{_h(t.note)}</p>'])
    if not t.rows:
        return "\n".join(out + ['<p class="nodata">no data: no rows for this release</p>'])
    out.append("<table><thead><tr>" + "".join(f"<th>{_h(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for row in t.rows:
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="num">{_h(_fmt(v))}</td>' if num else f"<td>{_h(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def render_html(release: str, layers: list[int], items: list[Item], tables: list[Table], run_id: str) -> str:
    """One static page: every plot with its caption (or its "no data" note) and the tables."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections: dict[str, list[str]] = {}
    for t in tables:
        if t.section == "Release":
            sections.setdefault("Release", []).append(_table_html(t))
    for it in items:
        parts = [f"<h3>{_h(it.title)}</h3>"]
        if it.file:
            parts.append(f'<figure><img src="{_h(it.file)}" alt="{_h(it.title)}">'
                         f"<figcaption>{_h(it.caption)}</figcaption></figure>")
        else:
            if it.caption:
                parts.append(f'<p class="caption">{_h(it.caption)}</p>')
            parts.append(f'<p class="nodata">{_h(it.note)}</p>')
        sections.setdefault(it.section, []).append("\n".join(parts))
    for t in tables:
        if t.section != "Release":
            sections.setdefault(t.section, []).append(_table_html(t))
    order = [s for s in SECTION_ORDER if s in sections] + [s for s in sections if s not in SECTION_ORDER]
    anchors = {s: _slug(s.lower()) for s in order}
    nav = " ".join(f'<a href="#{anchors[s]}">{_h(s)}</a>' for s in order)
    n_plots = sum(1 for it in items if it.file)
    body = "\n".join(f'<h2 id="{anchors[s]}">{_h(s)}</h2>\n' + "\n".join(sections[s]) for s in order)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>saew report: {_h(release)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>SAE evolution report: {_h(release)}</h1>
<p class="meta">{len(layers)} layers ({_h(', '.join(map(str, layers)))}); {n_plots} plots;
generated {_h(now)} by saew (run {_h(run_id)}). A static page: every image is a file beside it.</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""
