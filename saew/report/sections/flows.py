"""Cluster flows: Sankey diagrams of the default links (rpt_sankey_flows, with dbt's "other"
bucket) and the fates of the largest clusters at the Sankey layer pairs (rpt_cluster_fates)."""
from __future__ import annotations

import numpy as np

from saew.report.items import Item, Table, slug
from saew.report.read import Reader, Setup, headline, links_of, missing, preferred

SEC = "Cluster flows"
TABLE_ROWS = 25


def sankey_flows(r: Reader, release: str, space: str, link: str, src_layers: list[int]) -> dict[str, np.ndarray]:
    """The Sankey rows of one link for the given source layers (columns src_layer, dst_layer, src,
    dst, flow), with dbt's lumped "other" nodes (NULL clusters) as ``plots.OTHER``."""
    from saew.report.plots import OTHER

    c = r.cols("""
        SELECT src_layer, dst_layer, src_cluster, dst_cluster, flow FROM rpt_sankey_flows
        WHERE release = $r AND cluster_space = $s AND link = $l AND list_contains($src, src_layer)
        ORDER BY src_layer, src_cluster NULLS LAST, dst_cluster NULLS LAST""",
               {"r": release, "s": space, "l": link, "src": src_layers})
    src, dst = (np.asarray(c.pop(k), dtype=float) for k in ("src_cluster", "dst_cluster"))
    c["src"] = np.where(np.isnan(src), OTHER, src).astype(np.int64)
    c["dst"] = np.where(np.isnan(dst), OTHER, dst).astype(np.int64)
    return c


def plot_sankeys(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    title = "Sankey flows of clusters"
    cap = ("Each panel is one layer pair l -> l': boxes on the left are clusters at l, on the right "
           "clusters at l'; a band's thickness is the flow N_ab between them (matched feature pairs "
           "for match links, transported mass in features for transport links), from "
           "fct_cluster_transitions. Box height = the cluster's total flow, so members that leak "
           "(to noise, undescribed or unmatched) are not drawn: see the leak curves. The "
           f"{s.var('sankey_top')} largest clusters of each side are drawn; the rest are lumped into "
           "'other' (grey; rpt_sankey_flows). A band that stays one colour and lands in one box is a "
           "surviving cluster; one box fanning into several is a split; several bands into one box is a merge.")
    miss = missing(r, "rpt_sankey_flows", "fct_cluster_transitions")
    if miss:
        return [Item(SEC, title, cap, note=miss)]
    if not s.pairs:
        return [Item(SEC, title, cap, note="no data: the release has a single layer (no layer pairs)")]
    links = links_of(r, "rpt_sankey_flows", s.release)
    if not links:
        return [Item(SEC, title, cap, note="no data: run saew cluster, then saew match and/or "
                                           "saew transport, then saew build")]
    spaces = list(dict.fromkeys(cs for cs, _ in links))
    chosen = [(cs, l) for cs in spaces for kind in ("match", "transport")
              if (l := preferred([x for c, x in links if c == cs], kind, cs))]
    src = [a for a, _ in s.pairs]
    items: list[Item] = []
    for space, link in chosen:
        c = sankey_flows(r, s.release, space, link.name, src)
        panels = []
        for a, b in s.pairs:
            m = c["src_layer"] == a
            panels.append((f"layer {a} -> {b}", {k: v[m] for k, v in c.items()}))
        name = f"sankey_{slug(space)}_{slug(link.name)}.png"
        plots.sankey_figure(panels, f"{link.name}, {space} clusters", s.out / name)
        items.append(Item(SEC, f"Sankey: {link.name} ({space} clusters)", cap, file=name))
    return items


def table_fates(r: Reader, s: Setup) -> Table:
    cap = ("The largest source clusters at the Sankey layer pairs and what happens to them (rpt_cluster_fates "
           "from fct_cluster_fates): purity = largest share M_ab going to one destination cluster, leak = "
           "share not reaching any, H_cond = entropy of the destinations (nats). Label = description of "
           "the cluster's most confident member.")
    title = "Cluster fates"
    miss = missing(r, "rpt_cluster_fates", "fct_cluster_fates")
    if miss:
        return Table(SEC, title, cap, note=miss)
    links = links_of(r, "rpt_cluster_fates", s.release)
    if not links:
        return Table(SEC, title, cap, note="no data: run saew cluster and saew match, then saew build")
    space, link = headline(links)
    per_pair = max(4, TABLE_ROWS // max(len(s.pairs), 1))
    cols, rows = r.rows("""
        SELECT src_layer AS layer, src_cluster AS cluster, size, fate, purity, leak, h_cond AS "H_cond", label
        FROM rpt_cluster_fates
        WHERE release = $r AND cluster_space = $s AND link = $l AND list_contains($src, src_layer)
          AND size_rank <= $k
        ORDER BY src_layer, size_rank""",
                        {"r": s.release, "s": space, "l": link.name, "src": [a for a, _ in s.pairs], "k": per_pair})
    return Table(SEC, f"{title}: {link.name} ({space} clusters)", cap, cols, rows)
