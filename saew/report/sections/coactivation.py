"""Co-activation: do a cluster's features fire together (rpt_coactivation_lift), and the degree
distribution of each layer's co-activation graph (rpt_degree_ccdf)."""
from __future__ import annotations

from saew.report.items import Item
from saew.report.read import Reader, Setup, evenly, missing, n_rows

SEC = "Co-activation"
DEGREE_MAX_LAYERS = 12


def plot_coactivation(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    cap_lift = ("Do features of one cluster fire together? Per layer, the median (line) and interquartile "
                f"range (band) over clusters with at least {s.var('min_cluster_members')} live members, from "
                "fct_cluster_coactivation (rpt_coactivation_lift): Jaccard lift = mean pairwise Jaccard of a "
                "cluster's members divided by the same mean over all live features of the layer (1 = no "
                "better than a random set, dashed), and NPMI delta = mean pairwise NPMI minus that "
                "background (0 = random). Above the dashed line, clusters are co-activation units.")
    cap_deg = ("Degree distribution of each layer's co-activation graph (features are nodes; an edge joins "
               "two features whose NPMI is above saew communities' --npmi-threshold, default 0), as the "
               "share of features with degree >= d on log-log axes, next to a seeded random graph G(n, m) "
               "with the same nodes and edges (dotted; rpt_degree_ccdf from graph_degrees); features with "
               "no edge are not shown. A straight tail means a heavy-tailed (hub-dominated) graph.")
    items: list[Item] = []
    miss = missing(r, "rpt_coactivation_lift", "fct_cluster_coactivation")
    c = None if miss else r.cols("SELECT * FROM rpt_coactivation_lift WHERE release = $r ORDER BY space, layer",
                                 {"r": s.release})
    if c is None or n_rows(c) == 0:
        items.append(Item(SEC, "Co-activation of clusters", cap_lift,
                          note=miss or "no data: run saew harvest, saew cluster and saew coactivation, "
                                       "then saew build"))
    else:
        name = "coactivation_lift.png"
        plots.band_panels(c, "space", [("jaccard_lift", "Jaccard lift", 1.0), ("npmi_delta", "NPMI delta", 0.0)],
                          "Co-activation within clusters against a random set", s.out / name)
        items.append(Item(SEC, "Co-activation of clusters", cap_lift, file=name))
    miss = missing(r, "rpt_degree_ccdf", "saew communities")
    c = None
    if not miss:
        layers = r.cols("SELECT DISTINCT layer FROM rpt_degree_ccdf WHERE release = $r ORDER BY layer",
                        {"r": s.release})["layer"]
        layers = evenly([int(v) for v in layers], DEGREE_MAX_LAYERS)
        c = r.cols("SELECT * FROM rpt_degree_ccdf WHERE release = $r AND list_contains($l, layer) "
                   "ORDER BY layer, degree", {"r": s.release, "l": layers})
    if c is None or n_rows(c) == 0:
        items.append(Item(SEC, "Co-activation graph degrees", cap_deg,
                          note=miss or "no data: run saew harvest and saew coactivation, then saew build "
                                       "(after saew communities, which writes the graph degrees)"))
    else:
        name = "coactivation_degree.png"
        plots.ccdf_figure(c, "Degree distribution of the co-activation graphs", s.out / name)
        items.append(Item(SEC, "Co-activation graph degrees", cap_deg, file=name))
    return items
