"""HTML of the feature browser: one section per feature (its description, statistics and
activation histogram, contexts, logits, clusters, lineage, co-activations and next-layer
correlations), the pages that hold a block of sections, and the index with the search box.
Every string from the warehouse is HTML-escaped; numbers are only formatted.

The markup is compact without compression: attribute values that need no quotes (class names,
page links) have none, and the optional end tags of li, tr and td are left out (HTML5). The
descriptions of linked features are not repeated on every page that links them: each page
loads search.js (the index's data, one file) and PAGE_JS writes them beside the links of its
``.lk`` lists."""
from __future__ import annotations

import html
import math

from saew.report.browse.assets import PAGE_JS, SEARCH_JS, page_name


HIST_H = 24         # height of the histogram's viewBox: a bar is ceil(HIST_H * n / tallest n) units


def h(s) -> str:
    """Escape for attribute values."""
    return html.escape(str(s), quote=True)


def t(s) -> str:
    """Escape for text between tags (quotes need no escaping there, which keeps pages small)."""
    return html.escape(str(s), quote=False)


def num(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _a(layer: int, feature: int, label: str | None = None) -> str:
    """A link to a feature's section (ids are integers: nothing to escape or quote). PAGE_JS
    reads the label L<layer>/<feature> to add the linked feature's description."""
    return f'<a href={page_name(layer, feature)}#f{feature}>{label or f"L{layer}/{feature}"}</a>'


def _flag(name: str, value, detail: str = "") -> str:
    if value is None:
        return ""
    return f'<span class="flag{" on" if value else ""}">{h(name)}: {"yes" if value else "no"}{h(detail)}</span>'


def histogram(bins: list[int], counts: list[int], max_act) -> str:
    """The activation histogram as an inline SVG step path: one unit of width per bin (the
    number of bins is the last bin + 1: the max always falls in the last one), bar heights
    ceil(HIST_H * n / tallest n) so that no non-empty bin is drawn flat; runs of equal height are
    one segment. Bins and counts are rpt_feature_histogram's rows; only the drawing is here."""
    if not bins:
        return ""
    n_bins, top = bins[-1] + 1, max(counts)
    heights = [0] * n_bins
    for b, n in zip(bins, counts):
        heights[b] = math.ceil(HIST_H * n / top)
    path, i = [f"M0 {HIST_H}"], 0
    while i < n_bins:
        j = i
        while j + 1 < n_bins and heights[j + 1] == heights[i]:
            j += 1
        path.append(f"V{HIST_H - heights[i]}h{j - i + 1}")
        i = j + 1
    return (f'<div class=hist><svg viewBox="0 0 {n_bins} {HIST_H}" preserveAspectRatio=none>'
            f'<path d="{"".join(path)}V{HIST_H}z"/></svg>'
            f'<span class=m>histogram: {n_bins} bins from 0 to {num(max_act)}; tallest bin {top} tokens</span></div>')


def _stats(p: dict, hist: tuple[list[int], list[int]] | None) -> str:
    cells = [("frac active", p["frac_active"]), ("mean act", p["mean_act"]), ("max act", p["max_act"]),
             ("tokens active", p["n_active"])]
    if p["ext_source"] is not None:
        cells += [(f"max act ({p['ext_source']})", p["ext_max_act"]),
                  (f"frac nonzero ({p['ext_source']})", p["ext_frac_nonzero"])]
    head = "".join(f"<th>{t(k)}" for k, _ in cells)
    row = "".join(f"<td class=n>{num(v)}" for _, v in cells)
    table = f"<table><tr>{head}<tr>{row}</table>"
    return f"<div class=st>{table}{histogram(*hist, p['max_act'])}</div>" if hist else table


def _contexts(rows: list[tuple]) -> str:
    if not rows:
        return '<h3>Contexts</h3><p class=none>no activation examples</p>'
    out = ["<h3>Top contexts</h3>"]
    quantile = False
    for kind, rank, tokens, shade, value in rows:
        if kind != "top" and not quantile:
            out.append("<h3>Quantile samples</h3>")
            quantile = True
        toks = "".join(f"<i class=s{lv}>{t(tok)}</i>" if lv else t(tok) for tok, lv in zip(tokens or [], shade or []))
        out.append(f"<div class=ctx>{toks} <span class=m>{num(value)}</span></div>")
    return "".join(out)


def _logits(p: dict) -> str:
    parts = []
    for name, toks, vals in (("positive", p["pos_str"], p["pos_values"]), ("negative", p["neg_str"], p["neg_values"])):
        if toks:
            items = ", ".join(f"<code>{t(tok)}</code> {num(v)}" for tok, v in zip(toks, vals or []))
            parts.append(f"<li>{name}: {items}")
    return f"<h3>Logits</h3><ul>{''.join(parts)}</ul>" if parts else ""


def _clusters(layer: int, rows: list[tuple]) -> str:
    if not rows:
        return ""
    items = []
    for space, cluster, n_members, mates in rows:
        label = {-1: "noise", -2: "no vector"}.get(cluster, f"cluster {cluster} ({num(n_members)} features)")
        mate_links = " ".join([_a(layer, m, str(m)) for m in mates]) if mates else ""
        items.append(f"<li>{t(space)}: {t(label)}{': ' + mate_links if mate_links else ''}")
    return f"<h3>Clusters</h3><ul>{''.join(items)}</ul>"


def _lineage(rows: list[tuple]) -> str:
    if not rows:
        return ""
    by_link: dict[str, list[tuple]] = {}
    for row in rows:
        by_link.setdefault(row[0], []).append(row)
    items = []
    for link, rs in by_link.items():
        back = [r for r in rs if r[1] == "backward"]
        fwd = [r for r in rs if r[1] == "forward"]
        steps = [f"{_a(ol, of)} cos {num(c)}" for _, _, _, ol, of, c in reversed(back)]
        steps.append("<b>this</b>")
        steps += [f"cos {num(c)} {_a(ol, of)}" for _, _, _, ol, of, c in fwd]
        items.append(f"<li>{t(link)}:<br>{' → '.join(steps)}")
    return f"<h3>Lineage</h3><ul class=lk>{''.join(items)}</ul>"


def _coactivation(layer: int, rows: list[tuple]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_a(layer, o)}<td>{num(n)}<td>{num(j)}<td>{num(n_ab)}" for _, o, n, j, n_ab in rows)
    return ("<h3>Co-activating (NPMI)</h3><table class=lk><tr><th>feature<th>npmi<th>jaccard<th>tokens both"
            f"{body}</table>")


def _flow(rows: list[tuple]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_a(dl, df)}<td>{num(p)}<td>{num(s)}<td>{num(n)}"
                   for _, dl, df, p, s, n in rows)
    return ("<h3>Correlated next-layer features</h3><table class=lk><tr><th>feature<th>pearson"
            f"<th>sufficiency<th>necessity{body}</table>")


def feature_html(layer: int, p: dict, d: dict[str, list[tuple]],
                 hist: tuple[list[int], list[int]] | None = None) -> str:
    f = p["feature"]
    flags = (('<span class="flag dead">dead</span>' if p["is_dead"] else "")
             + _flag("pass-through", p["pass_through"], f" (max pearson {num(p['max_pearson_out'])})"
                     if p["max_pearson_out"] is not None else "")
             + _flag("appearing", p["appearing"], f" (max pearson in {num(p['max_pearson_in'])})"
                     if p["max_pearson_in"] is not None else ""))
    desc = (f'<p class=desc>{t(p["description"])}</p>' if p["description"]
            else '<p class="desc none">no description</p>')
    explainer = f'<p class=m>explainer: {t(p["explainer"])}</p>' if p["explainer"] else ""
    return "".join([
        f'<section class=feat id=f{f}><h2>L{layer} / {f}{flags}</h2>', desc, explainer, _stats(p, hist),
        _contexts(d["rpt_feature_examples"]), _logits(p), _clusters(layer, d["rpt_feature_clusters"]),
        _lineage(d["rpt_feature_lineage"]), _coactivation(layer, d["rpt_feature_coactivation"]),
        _flow(d["rpt_feature_flow"]), "</section>"])


def _head(title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{h(title)}</title>'
            f'<link rel="stylesheet" href="style.css"></head><body>')


REPORT_LINK = '<a href="../index.html">report</a>'


def page_html(release: str, layer: int, block: int, n_blocks: int, sections: list[str], first: int,
              last: int, report: bool) -> str:
    nav = ['<a href="index.html">search</a>'] + ([REPORT_LINK] if report else [])
    if block > 0:
        nav.append(f'<a href="l{layer}-{block - 1}.html">&larr; features before</a>')
    if block + 1 < n_blocks:
        nav.append(f'<a href="l{layer}-{block + 1}.html">features after &rarr;</a>')
    return (_head(f"{release}: layer {layer}, features {first}-{last}")
            + f"<h1>{h(release)}: layer {layer}, features {first}&ndash;{last}</h1><nav>{''.join(nav)}</nav>"
            + "".join(sections)
            + '<script src="search.js"></script><script>' + PAGE_JS + "</script></body></html>\n")


def index_html(release: str, layers: list[tuple[int, int]], notes: list[str], run_id: str, report: bool) -> str:
    """The search page: a box, the results list (filled by the inline script from search.js;
    ?q=TERM fills the box on load) and links to each layer's first page."""
    layer_links = " ".join(f'<a href="l{l}-0.html">L{l}</a> <span class="m">({n})</span>' for l, n in layers)
    note_html = "".join(f'<p class="none">{h(n)}</p>' for n in notes)
    return (_head(f"{release}: feature browser")
            + f'<h1>Feature browser: {h(release)}</h1>'
            + f'<p class="m">{sum(n for _, n in layers)} features in {len(layers)} layers; generated by '
              f'saew browse (run {h(run_id)}). A static site: everything is a file in this folder.</p>'
            + (f"<nav>{REPORT_LINK}</nav>" if report else "") + note_html
            + '<p><input id="q" type="search" placeholder="search descriptions or ids (e.g. L3/12, f12, &quot;comma&quot;)" '
              'autofocus></p><p id="count" class="m"></p><ol id="results"></ol>'
            + f"<h3>Layers</h3><p>{layer_links}</p>"
            + '<script src="search.js"></script><script>' + SEARCH_JS + "</script></body></html>\n")
