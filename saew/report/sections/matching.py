"""Matching: cost and cosine of the matched pairs (rpt_match_quantiles), feature persistence
(rpt_persistence_histogram, rpt_persistent_features) and reconstruction through the matches
(rpt_reconstruction)."""
from __future__ import annotations

from saew.report.items import Item, Table, slug
from saew.report.read import Link, Reader, Setup, missing, n_rows, preferred

SEC = "Matching"


def plot_matching(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    cap_box = ("Distribution of the matched pairs' cost and cosine per layer pair (x = source layer) and "
               "method, from rpt_match_quantiles: box = quartiles, line = median, whiskers = 5th and 95th "
               "percentiles. Cost units differ by method (folded and random both use the folded cost, so "
               "they compare directly); cosine is always the cosine of the two features' vectors in the "
               f"match space. {s.var('null_method')} (grey, its first draw) is the null model.")
    cap_pers = (f"How many consecutive matching steps a feature keeps a cosine >= {s.var('persistence_cosine')} "
                "(its persistence, from fct_feature_persistence), counted over all features of all layers, per "
                f"match link (log scale). The {s.var('null_method')} link (grey) is the null model: a real link's "
                "long tail shows features that persist through many layers.")
    cap_rec = ("Explained variance of layer l' hidden states reconstructed from layer l's SAE activations "
               "carried through the matching (x_hat = decode_l'(P f_l)), per layer pair and method, from the "
               f"reconstruction table; the {s.var('identity_method')} (no permutation) and "
               f"{s.var('null_method')} baselines are dashed. Higher than the baselines means the matching "
               "carries meaning.")
    items: list[Item] = []
    miss = missing(r, "rpt_match_quantiles", "saew match")
    c = None if miss else r.cols("SELECT * FROM rpt_match_quantiles WHERE release = $r "
                                 "ORDER BY link_space, is_null, link_method, src_layer", {"r": s.release})
    if c is None or n_rows(c) == 0:
        items.append(Item(SEC, "Match cost and cosine", cap_box, note=miss or "no data: run saew match"))
    for space in dict.fromkeys(c["link_space"].tolist()) if c is not None and n_rows(c) else []:
        m = c["link_space"] == space
        name = f"matching_{slug(space)}.png"
        plots.box_panels({k: v[m] for k, v in c.items()}, "link_method",
                         [("cost", "matching cost"), ("cosine", "cosine of matched features")],
                         f"Matched pairs per layer pair ({space} space)", s.out / name, null="is_null")
        items.append(Item(SEC, f"Match cost and cosine ({space} space)", cap_box, file=name))
    miss = missing(r, "rpt_persistence_histogram", "fct_feature_persistence")
    c = None if miss else r.cols("SELECT link, is_null, persistence, n_features FROM rpt_persistence_histogram "
                                 "WHERE release = $r ORDER BY is_null, link, persistence", {"r": s.release})
    if c is None or n_rows(c) == 0:
        items.append(Item(SEC, "Persistence histogram", cap_pers, note=miss or "no data: run saew match, then saew build"))
    else:
        name = "persistence.png"
        plots.histogram_bars(c, "link", "persistence", "n_features", "Feature persistence",
                             f"persistence (consecutive steps with cosine >= {s.var('persistence_cosine')})",
                             s.out / name, null="is_null")
        items.append(Item(SEC, "Persistence histogram", cap_pers, file=name))
    miss = missing(r, "rpt_reconstruction", "saew evaluate")
    c = None if miss else r.cols("SELECT series, is_baseline, src_layer, explained_variance FROM rpt_reconstruction "
                                 "WHERE release = $r ORDER BY is_baseline, series, src_layer", {"r": s.release})
    if c is None or n_rows(c) == 0:
        items.append(Item(SEC, "Reconstruction through matches", cap_rec, note=miss or "no data: run saew evaluate"))
    else:
        name = "reconstruction.png"
        plots.line_panels(c, "src_layer", "series", [("explained_variance", "explained variance")],
                          "Reconstruction through matches", s.out / name, ncol=1, null="is_baseline")
        items.append(Item(SEC, "Reconstruction through matches", cap_rec, file=name))
    return items


def table_persistent(r: Reader, s: Setup) -> Table:
    cap = (f"Features whose chain of matches keeps a cosine >= {s.var('persistence_cosine')} for the most "
           "consecutive layers (fct_feature_persistence, rpt_persistent_features), with their descriptions.")
    title = "Most persistent features"
    miss = missing(r, "rpt_persistent_features", "fct_feature_persistence")
    if miss:
        return Table(SEC, title, cap, note=miss)
    links = [Link(*row) for row in r.rows(
        "SELECT DISTINCT link, link_kind, link_space, link_method FROM rpt_persistent_features "
        "WHERE release = $r AND NOT is_null ORDER BY link", {"r": s.release})[1]]
    link = preferred(links, "match", "decoder")
    if link is None:
        return Table(SEC, title, cap, note="no data: run saew match, then saew build")
    cols, rows = r.rows("SELECT layer, feature, persistence, description FROM rpt_persistent_features "
                        "WHERE release = $r AND link = $l ORDER BY rank", {"r": s.release, "l": link.name})
    return Table(SEC, f"{title} ({link.name})", cap, cols, rows)
