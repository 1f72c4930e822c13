"""The report page and its folder: one static, self-contained HTML file (no scripts, no server,
no network; every image a PNG beside it), written atomically, and the folder swapped in whole."""
from __future__ import annotations

import html
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from saew.report.items import SECTION_ORDER, Item, Table, Text, slug

CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; background: #fff; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { font-size: 0.9em; color: #444; max-width: 1100px; }
.nodata { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; font-size: 0.9em; }
.finding { margin: 0.3em 0; max-width: 1100px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
nav a { margin-right: 1em; }
"""


def h(s) -> str:
    return html.escape(str(s), quote=True)


def fmt(v) -> str:
    """A cell: '' for NULL/nan, yes/no for booleans, three decimals for floats."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def table_html(t: Table) -> str:
    out = [f"<h3>{h(t.title)}</h3>", f'<p class="caption">{h(t.caption)}</p>']
    if t.note:
        return "\n".join(out + [f'<p class="nodata">{h(t.note)}</p>'])
    if not t.rows:
        return "\n".join(out + ['<p class="nodata">no data: no rows for this release</p>'])
    out.append("<table><thead><tr>" + "".join(f"<th>{h(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for row in t.rows:
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="num">{h(fmt(v))}</td>' if num else f"<td>{h(fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def text_html(t: Text) -> str:
    out = [f"<h3>{h(t.title)}</h3>"]
    if t.note:
        out.append(f'<p class="nodata">{h(t.note)}</p>')
    out += [f'<p class="finding">{h(p)}</p>' for p in t.paragraphs]
    return "\n".join(out)


def item_html(it: Item) -> str:
    parts = [f"<h3>{h(it.title)}</h3>"]
    if it.file:
        parts.append(f'<figure><img src="{h(it.file)}" alt="{h(it.title)}">'
                     f"<figcaption>{h(it.caption)}</figcaption></figure>")
    else:
        if it.caption:
            parts.append(f'<p class="caption">{h(it.caption)}</p>')
        parts.append(f'<p class="nodata">{h(it.note)}</p>')
    return "\n".join(parts)


def render_html(release: str, layers: list[int] | None, items: list[Item], tables: list[Table],
                texts: list[Text], run_id: str) -> str:
    """One static page, sections in SECTION_ORDER (the findings first); within a section its
    paragraphs, then its plots (or their "no data" notes), then its tables."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections: dict[str, list[str]] = {}
    for t in texts:
        sections.setdefault(t.section, []).append(text_html(t))
    for it in items:
        sections.setdefault(it.section, []).append(item_html(it))
    for t in tables:
        sections.setdefault(t.section, []).append(table_html(t))
    order = [s for s in SECTION_ORDER if s in sections] + [s for s in sections if s not in SECTION_ORDER]
    anchors = {s: slug(s.lower()) for s in order}
    nav = " ".join(f'<a href="#{anchors[s]}">{h(s)}</a>' for s in order)
    n_plots = sum(1 for it in items if it.file)
    body = "\n".join(f'<h2 id="{anchors[s]}">{h(s)}</h2>\n' + "\n".join(sections[s]) for s in order)
    where = (f"{len(layers)} layers ({h(', '.join(map(str, layers)))})" if layers is not None
             else "layers not known (the catalog has no report models: run saew build)")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>saew report: {h(release)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>SAE evolution report: {h(release)}</h1>
<p class="meta">{where}; {n_plots} plots;
generated {h(now)} by saew (run {h(run_id)}). A static page: every image is a file beside it.</p>
<p><a href="features/index.html">Feature browser</a>: one section per feature, with search
(written by saew browse --release {h(release)}).</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""


def write_page(folder: Path, page: str) -> Path:
    """index.html written to a temporary name in the folder, then renamed."""
    index = folder / "index.html"
    tmp = index.with_name(".index.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index


def swap(new: Path, final: Path, old: Path) -> None:
    """Replace the folder ``final`` by ``new`` as a whole (two renames, then drop the old one)."""
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
