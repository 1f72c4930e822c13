"""HTML of the feature browser: one section per feature (its description, statistics,
contexts, logits, clusters, lineage, co-activations and next-layer correlations), the pages
that hold a block of sections, and the index with the search box. Every string from the
warehouse is HTML-escaped; numbers are only formatted."""
from __future__ import annotations

import html

from saew.report.browse.assets import CSS, SEARCH_JS, page_name


SHORT = 70          # characters of a linked feature's description shown beside the link


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
    """A link to a feature's section (ids are integers: nothing to escape)."""
    return f'<a href="{page_name(layer, feature)}#f{feature}">{label or f"L{layer}/{feature}"}</a>'


def _desc(d) -> str:
    """A linked feature's description, cut to SHORT characters."""
    if not d:
        return ""
    d = d if len(d) <= SHORT else d[:SHORT - 1] + "…"
    return f' <span class="meta">{t(d)}</span>'


def _flag(name: str, value, detail: str = "") -> str:
    if value is None:
        return ""
    return f'<span class="flag{" on" if value else ""}">{h(name)}: {"yes" if value else "no"}{h(detail)}</span>'


def _stats(p: dict) -> str:
    cells = [("frac active", p["frac_active"]), ("mean act", p["mean_act"]), ("max act", p["max_act"]),
             ("tokens active", p["n_active"])]
    if p["ext_source"] is not None:
        cells += [(f"max act ({p['ext_source']})", p["ext_max_act"]),
                  (f"frac nonzero ({p['ext_source']})", p["ext_frac_nonzero"])]
    head = "".join(f"<th>{h(k)}</th>" for k, _ in cells)
    row = "".join(f'<td class="n">{num(v)}</td>' for _, v in cells)
    return f"<table><tr>{head}</tr><tr>{row}</tr></table>"


def _contexts(rows: list[tuple]) -> str:
    if not rows:
        return '<h3>Contexts</h3><p class="none">no activation examples</p>'
    out = ["<h3>Top contexts</h3>"]
    quantile = False
    for kind, rank, tokens, shade, value in rows:
        if kind != "top" and not quantile:
            out.append("<h3>Quantile samples</h3>")
            quantile = True
        toks = "".join(f'<i class="s{lv}">{t(tok)}</i>' if lv else t(tok) for tok, lv in zip(tokens or [], shade or []))
        out.append(f'<div class="ctx">{toks} <span class="meta">{num(value)}</span></div>')
    return "".join(out)


def _logits(p: dict) -> str:
    parts = []
    for name, toks, vals in (("positive", p["pos_str"], p["pos_values"]), ("negative", p["neg_str"], p["neg_values"])):
        if toks:
            items = ", ".join(f"<code>{t(tok)}</code> {num(v)}" for tok, v in zip(toks, vals or []))
            parts.append(f"<li>{name}: {items}</li>")
    return f"<h3>Logits</h3><ul>{''.join(parts)}</ul>" if parts else ""


def _clusters(layer: int, rows: list[tuple]) -> str:
    if not rows:
        return ""
    items = []
    for space, cluster, n_members, mates in rows:
        label = {-1: "noise", -2: "no vector"}.get(cluster, f"cluster {cluster} ({num(n_members)} features)")
        mate_links = " ".join([_a(layer, m, str(m)) for m in mates]) if mates else ""
        items.append(f"<li>{h(space)}: {h(label)}{': ' + mate_links if mate_links else ''}</li>")
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
        steps = [f"{_a(ol, of)} cos {num(c)}{_desc(d)}"
                 for _, _, _, ol, of, c, d in reversed(back)]
        steps.append("<b>this</b>")
        steps += [f"cos {num(c)} {_a(ol, of)}{_desc(d)}"
                  for _, _, _, ol, of, c, d in fwd]
        items.append(f"<li>{h(link)}:<br>{' &rarr; '.join(steps)}</li>")
    return f"<h3>Lineage</h3><ul>{''.join(items)}</ul>"


def _coactivation(layer: int, rows: list[tuple]) -> str:
    if not rows:
        return ""
    items = "".join(f"<li>{_a(layer, o)} npmi {num(n)}, jaccard {num(j)}</li>" for _, o, n, j, _n_ab, _d in rows)
    return f"<h3>Co-activating (NPMI)</h3><ul>{items}</ul>"


def _flow(rows: list[tuple]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_a(dl, df)}</td><td>{num(p)}</td><td>{num(s)}</td><td>{num(n)}</td></tr>"
                   for _, dl, df, p, s, n, _d in rows)
    return ("<h3>Correlated next-layer features</h3><table class=\"n\"><tr><th>feature</th><th>pearson</th>"
            f"<th>sufficiency</th><th>necessity</th></tr>{body}</table>")


def feature_html(layer: int, p: dict, d: dict[str, list[tuple]]) -> str:
    f = p["feature"]
    flags = (('<span class="flag dead">dead</span>' if p["is_dead"] else "")
             + _flag("pass-through", p["pass_through"], f" (max pearson {num(p['max_pearson_out'])})"
                     if p["max_pearson_out"] is not None else "")
             + _flag("appearing", p["appearing"], f" (max pearson in {num(p['max_pearson_in'])})"
                     if p["max_pearson_in"] is not None else ""))
    desc = (f'<p class="desc">{t(p["description"])}</p>' if p["description"]
            else '<p class="desc none">no description</p>')
    explainer = f'<p class="meta">explainer: {t(p["explainer"])}</p>' if p["explainer"] else ""
    return "".join([
        f'<section class="feat" id="f{f}"><h2>L{layer} / {f}{flags}</h2>', desc, explainer, _stats(p),
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
            + "".join(sections) + "</body></html>\n")


def index_html(release: str, layers: list[tuple[int, int]], notes: list[str], run_id: str, report: bool) -> str:
    """The search page: a box, the results list (filled by the inline script from search.js;
    ?q=TERM fills the box on load) and links to each layer's first page."""
    layer_links = " ".join(f'<a href="l{l}-0.html">L{l}</a> <span class="meta">({n})</span>' for l, n in layers)
    note_html = "".join(f'<p class="none">{h(n)}</p>' for n in notes)
    return (_head(f"{release}: feature browser")
            + f'<h1>Feature browser: {h(release)}</h1>'
            + f'<p class="meta">{sum(n for _, n in layers)} features in {len(layers)} layers; generated by '
              f'saew browse (run {h(run_id)}). A static site: everything is a file in this folder.</p>'
            + (f"<nav>{REPORT_LINK}</nav>" if report else "") + note_html
            + '<p><input id="q" type="search" placeholder="search descriptions or ids (e.g. L3/12, f12, &quot;comma&quot;)" '
              'autofocus></p><p id="count" class="meta"></p><ol id="results"></ol>'
            + f"<h3>Layers</h3><p>{layer_links}</p>"
            + '<script src="search.js"></script><script>' + SEARCH_JS + "</script></body></html>\n")
