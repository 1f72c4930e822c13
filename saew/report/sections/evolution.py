"""Evolution: the rates per layer pair of every link against the null band (rpt_evolution_series)
and the headline link's table next to its null (fct_layer_evolution_vs_null)."""
from __future__ import annotations

from saew.report.items import Item, Table, slug
from saew.report.read import Reader, Setup, headline, links_of, missing, n_rows

SEC = "Evolution"
FATES = [("survive_rate", "survive"), ("split_rate", "split"), ("merge_rate", "merge"),
         ("vanish_rate", "vanish"), ("birth_rate", "birth"), ("mean_leak", "mean leak")]
ENTROPY = [("h_cond_mean", "mean H_cond (nats)"), ("h_aug_mean", "mean H_aug (nats)"),
           ("mi_cond", "MI_cond (nats)"), ("mi_aug", "MI_aug (nats)")]


def plot_evolution(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    null = (f"the random-match null model (dashed grey: the mean over its draws, shaded: the null band "
            f"mean +- {s.var('null_band_z')} sd)")
    cap_rates = (f"Per layer pair l -> l' (x = l), for every link (coloured) and {null}, from "
                 f"fct_layer_evolution and fct_layer_evolution_null: survive = share of source clusters "
                 f"whose largest share M_ab >= {s.var('survive_threshold')}; split = share with at least two "
                 f"destinations M_ab >= {s.var('split_threshold')}; vanish = share with max M_ab < "
                 f"{s.var('split_threshold')}; merge = share of destination clusters fed by at least two "
                 f"sources with M_ab >= {s.var('merge_threshold')}; birth = share of destination clusters "
                 f"getting < {s.var('birth_threshold')} of their size from any one source; mean leak = mean "
                 f"share of a cluster's members whose flow does not reach a cluster at l' (noise, "
                 f"undescribed, unmatched). A link outside the null band is more (or less) structured than chance.")
    cap_h = ("Entropy (nats) of where a source cluster's flow goes, averaged over source clusters: "
             "H_cond over the destination clusters only, H_aug with leak as one more outcome; and the "
             "mutual information between source and destination cluster (MI_cond over flows, MI_aug "
             "with the leak column, weighted by cluster size), from fct_layer_evolution. Low entropy "
             f"and high MI mean clusters keep their identity across the pair; the dashed line and band show {null}.")
    miss = missing(r, "rpt_evolution_series", "fct_layer_evolution")
    if miss:
        return [Item(SEC, "Evolution curves", cap_rates, note=miss),
                Item(SEC, "Entropy and mutual information", cap_h, note=miss)]
    c = r.cols("SELECT * FROM rpt_evolution_series WHERE release = $r ORDER BY cluster_space, is_null, series, "
               "src_layer", {"r": s.release})
    if n_rows(c) == 0:
        note = "no data: run saew cluster and saew match (incl. --method random), then saew build"
        return [Item(SEC, "Evolution curves", cap_rates, note=note),
                Item(SEC, "Entropy and mutual information", cap_h, note=note)]
    items = []
    for space in dict.fromkeys(c["cluster_space"].tolist()):
        m = c["cluster_space"] == space
        cs = {k: v[m] for k, v in c.items()}
        name = f"evolution_{slug(space)}.png"
        plots.line_panels(cs, "src_layer", "series", FATES, f"Cluster fates per layer pair ({space} clusters)",
                          s.out / name, null="is_null")
        items.append(Item(SEC, f"Evolution curves ({space} clusters)", cap_rates, file=name))
        name = f"entropy_{slug(space)}.png"
        plots.line_panels(cs, "src_layer", "series", ENTROPY,
                          f"Entropy and mutual information per layer pair ({space} clusters)", s.out / name,
                          ncol=4, null="is_null")
        items.append(Item(SEC, f"Entropy and mutual information ({space} clusters)", cap_h, file=name))
    return items


def table_evolution(r: Reader, s: Setup) -> Table:
    cap = (f"Rates per layer pair for the default link next to the random-match null model: the mean over "
           f"its draws and their sd (fct_layer_evolution_vs_null; beyond = outside mean +- "
           f"{s.var('null_band_z')} sd).")
    title = "Layer evolution against the null"
    miss = missing(r, "fct_layer_evolution_vs_null", "fct_layer_evolution_vs_null")
    if miss:
        return Table(SEC, title, cap, note=miss)
    links = links_of(r, "fct_layer_evolution_vs_null", s.release)
    if not links:
        return Table(SEC, title, cap, note="no data: run saew cluster and saew match, then saew build")
    space, link = headline(links)
    cols, rows = r.rows("""
        SELECT src_layer || ' -> ' || dst_layer AS pair, survive_rate AS survive,
               null_survive_rate AS "survive (null)", null_survive_rate_sd AS "sd", survive_rate_beyond_null AS beyond,
               split_rate AS split, null_split_rate AS "split (null)", merge_rate AS merge,
               null_merge_rate AS "merge (null)", vanish_rate AS vanish, null_vanish_rate AS "vanish (null)",
               mean_leak AS leak, null_mean_leak AS "leak (null)", mi_aug AS "MI_aug", null_mi_aug AS "MI_aug (null)",
               n_null_draws AS "null draws", null_link
        FROM fct_layer_evolution_vs_null
        WHERE release = $r AND cluster_space = $s AND link = $l ORDER BY src_layer""",
                        {"r": s.release, "s": space, "l": link.name})
    null = rows[0][-1] if rows else "no null link"
    return Table(SEC, f"{title}: {link.name} vs {null} ({space} clusters)", cap, cols[:-1], [row[:-1] for row in rows])
