"""The findings that open the report (issue 14): per cluster space and link, which layer pairs
show what beyond the null (each rate with its null band), plainly "nothing beyond the null"
where so, and which layers have no structure; then the cluster-quality table. Everything comes
from rpt_layer_findings, rpt_link_findings and rpt_cluster_quality: Python picks rows and words."""
from __future__ import annotations

from saew.report.items import Table, Text
from saew.report.read import Link, Reader, Setup, link_order, missing

SEC = "Findings"
RATES = (("survive_rate", "survive"), ("split_rate", "split"), ("merge_rate", "merge"),
         ("vanish_rate", "vanish"), ("birth_rate", "birth"), ("mean_leak", "leak"))
VERDICT_RATES = RATES[:5]           # the rates behind the verdict (rpt_layer_findings)


def _pair(row: dict) -> str:
    return f"{row['src_layer']} -> {row['dst_layer']}"


def _with_null(row: dict, col: str) -> str:
    """'0.917 (null 0.306, band 0.104 to 0.508)': a rate next to its null mean and band."""
    v, mean, lo, hi = row[col], row[f"null_{col}"], row[f"null_{col}_lo"], row[f"null_{col}_hi"]
    if v is None:
        return "n/a"
    if mean is None:
        return f"{v:.3f} (no null)"
    band = f"band {lo:.3f} to {hi:.3f}" if lo is not None and hi is not None else "one draw, no band"
    return f"{v:.3f} (null {mean:.3f}, {band})"


def _spaces(rows: list[dict]) -> list[str]:
    spaces = list(dict.fromkeys(r["cluster_space"] for r in rows))
    return sorted(spaces, key=lambda sp: (sp != "decoder", sp))


def _link_sentence(link: dict, pairs: list[dict], s: Setup) -> str:
    name = f"{link['link']} ({link['cluster_space']} clusters)"
    n = link["n_pairs"]
    beyond = [p for p in pairs if p["verdict"] == "beyond null"]
    parts = []
    if beyond:
        shown = []
        for p in beyond:
            what = [f"{label} {_with_null(p, col)}" for col, label in VERDICT_RATES if p[f"{col}_beyond_null"]]
            shown.append(f"{_pair(p)}: {'; '.join(what)}")
        parts.append(f"beyond the null at {len(beyond)} of {n} layer pairs: " + " | ".join(shown))
        within = [_pair(p) for p in pairs if p["verdict"] == "within null"]
        if within:
            parts.append(f"nothing beyond the null at {', '.join(within)}")
    elif link["n_within_null"]:
        k = link["n_within_null"]
        parts.append(f"nothing beyond the null at any of its {k} layer pair{'s' if k != 1 else ''} with a null"
                     if k < n else f"nothing beyond the null at any of its {n} layer pairs")
    nostruct = [_pair(p) for p in pairs if p["verdict"] == "no structure"]
    if nostruct:
        parts.append(f"no structure at {', '.join(nostruct)} (a layer without structure: its rates are not findings)")
    nonull = [_pair(p) for p in pairs if p["verdict"] == "no null"]
    if nonull:
        parts.append(f"no null draws for {', '.join(nonull)} (run saew match --space {link['link_space']} "
                     f"--method {s.var('null_method')} --draws N)")
    if link["min_null_draws"] == 1 and link["n_pairs"] > link["n_no_null"]:
        parts.append(f"one null draw only, so no null band and no claim (run saew match --method "
                     f"{s.var('null_method')} --draws N)")
    return f"{name}: " + "; ".join(parts) + "."


def texts(r: Reader, s: Setup) -> list[Text]:
    miss = missing(r, "rpt_layer_findings", "fct_layer_evolution_vs_null")
    title = "What each link shows beyond its null"
    if miss:
        return [Text(SEC, title, note=miss)]
    rows = r.dicts("SELECT * FROM rpt_layer_findings WHERE release = $r ORDER BY cluster_space, link, src_layer",
                   {"r": s.release})
    links = r.dicts("SELECT * FROM rpt_link_findings WHERE release = $r", {"r": s.release})
    if not rows:
        return [Text(SEC, title, note="no data: run saew cluster and saew match (with --method random "
                                      "--draws N for the null), then saew build")]
    k = s.var("null_band_z")
    out = [Text(SEC, title, [
        f"A rate is beyond the null when it lies outside the null band, the mean over the random "
        f"matchings ({s.var('null_method')}, {s.var('null_method')}.1, ...) plus or minus {k} standard "
        f"deviations (|z| > {k}); a layer pair is a finding when its survive, split, merge, vanish or "
        f"birth rate is beyond the null and both layers' clusterings have structure."])]
    by_link = {(l["cluster_space"], l["link"]): l for l in links}
    for space in _spaces(rows):
        ls = [Link(l["link"], l["link_kind"], l["link_space"], l["link_method"])
              for l in links if l["cluster_space"] == space]
        paras = [_link_sentence(by_link[space, l.name],
                                [p for p in rows if p["cluster_space"] == space and p["link"] == l.name], s)
                 for l in link_order(ls, space)]
        out.append(Text(SEC, f"{space.capitalize()} clusters", paras))
    out.append(_structure_text(r, s))
    return out


def _structure_text(r: Reader, s: Setup) -> Text:
    title = "Layers without structure"
    if not r.has("rpt_cluster_quality"):
        return Text(SEC, title, note=missing(r, "rpt_cluster_quality", "saew cluster"))
    q = r.dicts("SELECT cluster_space, layer, has_structure FROM rpt_cluster_quality WHERE release = $r "
                "ORDER BY cluster_space, layer", {"r": s.release})
    paras = []
    for space in _spaces(q):
        qs = [x for x in q if x["cluster_space"] == space]
        none = [str(x["layer"]) for x in qs if x["has_structure"] is False]
        unknown = [str(x["layer"]) for x in qs if x["has_structure"] is None]
        if none:
            paras.append(f"{space} clusters: no structure at layer{'s' if len(none) > 1 else ''} {', '.join(none)} "
                         f"(no cluster beats its null): the layer pairs touching them are shown as "
                         f"'no structure', not as findings.")
        elif unknown and len(unknown) == len(qs):
            paras.append(f"{space} clusters: structure not assessed (cluster_quality.has_structure is empty; "
                         f"run saew cluster).")
        else:
            paras.append(f"{space} clusters: every assessed layer has structure.")
    return Text(SEC, title, paras or ["No cluster quality stored for this release (run saew cluster)."])


def tables(r: Reader, s: Setup) -> list[Table]:
    return [*_findings_tables(r, s), table_quality(r, s)]


def _findings_tables(r: Reader, s: Setup) -> list[Table]:
    if not r.has("rpt_layer_findings"):
        return []
    cap = (f"Per layer pair of the headline link: each rate next to the null's mean and its band (mean "
           f"+- {s.var('null_band_z')} sd over the null draws); 'beyond' marks a rate outside the band. Pairs "
           f"touching a layer without structure show 'no structure' instead of rates (rpt_layer_findings).")
    links = r.dicts("SELECT * FROM rpt_link_findings WHERE release = $r", {"r": s.release})
    out = []
    for space in _spaces(links):
        ls = link_order([Link(l["link"], l["link_kind"], l["link_space"], l["link_method"])
                         for l in links if l["cluster_space"] == space], space)
        link = ls[0]
        rows = r.dicts("SELECT * FROM rpt_layer_findings WHERE release = $r AND cluster_space = $s AND link = $l "
                       "ORDER BY src_layer", {"r": s.release, "s": space, "l": link.name})
        body = []
        for p in rows:
            if p["verdict"] == "no structure":
                cells = ["no structure"] * len(RATES)
            else:
                cells = [_with_null(p, col) + (" beyond" if p[f"{col}_beyond_null"] else "") for col, _ in RATES]
            body.append((_pair(p), p["n_src_clusters"], p["verdict"], *cells))
        out.append(Table(SEC, f"Findings: {link.name} ({space} clusters)", cap,
                         ["pair", "clusters", "verdict", *[label for _, label in RATES]], body))
    return out


def table_quality(r: Reader, s: Setup) -> Table:
    sec, title = "Cluster quality", "Cluster quality per layer"
    cap = ("Per layer and cluster space, as saew cluster stored it (rpt_cluster_quality): clusters, noise "
           "share, the largest cluster's share of the layer, coherence and silhouette next to the same "
           "scores for shuffled labels (the null), stability (adjusted Rand index between seeds) and "
           "whether some cluster beats its null (has structure). Empty cells: not computed.")
    miss = missing(r, "rpt_cluster_quality", "saew cluster")
    if miss:
        return Table(sec, title, cap, note=miss)
    cols, rows = r.rows("""
        SELECT cluster_space AS space, layer, n_clusters AS clusters, noise_frac AS noise,
               largest_share AS "largest share", coherence, coherence_null AS "coherence (null)",
               silhouette, silhouette_null AS "silhouette (null)", stability_ari AS stability,
               has_structure AS "has structure"
        FROM rpt_cluster_quality WHERE release = $r
        ORDER BY cluster_space <> 'decoder', cluster_space, layer""", {"r": s.release})
    if not rows:
        return Table(sec, title, cap, note="no data: run saew cluster (it stores cluster_quality)")
    return Table(sec, title, cap, cols, rows)
