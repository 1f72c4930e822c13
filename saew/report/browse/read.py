"""Reading the feature browser's models: one layer at a time, every ``rpt_feature_*`` row of
that layer grouped by feature. SQL only; nothing here computes a metric (the numbers, the
shading levels, the histogram bins and the rankings come from models/report/rpt_feature_*.sql)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from saew.errors import BadInput
from saew.report.read import Reader, release_layers

PAGES = "rpt_feature_pages"
HISTOGRAM = "rpt_feature_histogram"
# per-feature detail models -> their columns after (release, layer, feature), in page order
# (columns, order within a feature)
DETAILS: dict[str, tuple[str, str]] = {
    "rpt_feature_examples": ("kind, rank, tokens, shade, value", "kind DESC, rank"),
    "rpt_feature_clusters": ("cluster_space, cluster, n_members, mates", "cluster_space"),
    "rpt_feature_lineage": ("link, direction, distance, other_layer, other_feature, step_cosine",
                            "link, direction DESC, distance"),
    "rpt_feature_coactivation": ("rank, other_feature, npmi, jaccard, n_ab", "rank"),
    "rpt_feature_flow": ("rank, dst_layer, dst_feature, pearson, sufficiency, necessity", "rank"),
}
PAGE_COLUMNS = ("feature, description, explainer, frac_active, mean_act, max_act, n_active, is_dead, "
                "ext_max_act, ext_frac_nonzero, pos_str, pos_values, neg_str, neg_values, ext_source, "
                "pass_through, appearing, max_pearson_out, max_pearson_in")


@dataclass
class Layer:
    """One layer's features (rows of rpt_feature_pages as dicts), their detail rows, and each
    feature's histogram as (bins, counts) of its non-empty bins in bin order."""
    layer: int
    features: list[dict]
    details: dict[str, dict[int, list[tuple]]] = field(default_factory=dict)
    histograms: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)


def layers_of(r: Reader, release: str) -> list[int]:
    """The release's layers; bad input when the catalog was never built or lacks the browser's
    models, or when the release has no SAE."""
    layers = release_layers(r, release)
    if layers is None or not r.has(PAGES):
        raise BadInput(f"--release {release!r}: the catalog has no feature browser models "
                       "(rpt_feature_pages): run saew build first")
    return layers


def missing_details(r: Reader) -> list[str]:
    return [m for m in (*DETAILS, HISTOGRAM) if not r.has(m)]


def read_layer(r: Reader, release: str, layer: int) -> Layer:
    params = {"r": release, "l": layer}
    cols, rows = r.rows(f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE release = $r AND layer = $l "
                        "ORDER BY feature", params)
    out = Layer(layer, [dict(zip(cols, row)) for row in rows])
    for model, (columns, order) in DETAILS.items():
        grouped: dict[int, list[tuple]] = defaultdict(list)
        if r.has(model):
            for row in r.con.execute(f"SELECT feature, {columns} FROM {model} WHERE release = $r AND layer = $l "
                                     f"ORDER BY feature, {order}",
                                     params).fetchall():
                grouped[row[0]].append(row[1:])
        out.details[model] = grouped
    if r.has(HISTOGRAM):
        out.histograms = {f: (b, n) for f, b, n in r.con.execute(
            f"SELECT feature, list(bin ORDER BY bin), list(n ORDER BY bin) FROM {HISTOGRAM} "
            "WHERE release = $r AND layer = $l GROUP BY feature", params).fetchall()}
    return out


def search_rows(r: Reader, release: str) -> list[tuple]:
    """(layer, feature, description) of every feature, for the index's search data (and the
    pages' script, which shows linked features' descriptions from it)."""
    return r.con.execute(f"SELECT layer, feature, coalesce(description, '') FROM {PAGES} WHERE release = $r "
                         "ORDER BY layer, feature", {"r": release}).fetchall()
