"""``saew browse --release R``: the static feature browser of a release.

Output: ``<home>/reports/<release>/features/`` holding ``index.html`` (a search box over the
descriptions and feature ids; the script runs from file://, its data is ``search.js``, which
sets a global), ``style.css`` and one page per block of PER_PAGE features of a layer
(``l<layer>-<block>.html``, one ``<section id=f<feature>>`` per feature; each page also loads
search.js, for the linked features' descriptions). Every number comes
from the ``rpt_feature_*`` models (models/report/); Python renders. The folder is built under
a temporary name beside it and swapped in as a whole; ``saew report`` links to it and keeps it
when it rebuilds the report folder.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from saew.report.browse.assets import CSS, PER_PAGE, page_name, search_data
from saew.report.browse.read import layers_of, missing_details, read_layer, search_rows
from saew.report.browse.render import feature_html, index_html, page_html
from saew.report.html import swap

FOLDER = "features"


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release to browse")


@dataclass(frozen=True)
class Site:
    folder: Path
    n_features: int
    n_pages: int
    seconds: float


def run(args, ctx) -> str:
    site = build(ctx, args.release)
    return str(site.folder / "index.html")


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def build(ctx, release: str) -> Site:
    """Render every page into a fresh folder, then swap it in for the old one."""
    from saew.report.read import Reader
    from saew.storage import catalog

    t0 = time.perf_counter()
    base = ctx.home / "reports" / release
    con = catalog.connect(ctx.lake, read_only=True)
    try:
        r = Reader(con)
        layers = layers_of(r, release)          # bad input: raised before anything is written
        notes = [f"no data: {m} not in the catalog (run saew build)" for m in missing_details(r)]
        report = (base / "index.html").is_file()
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".{FOLDER}.{ctx.run_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            counts: list[tuple[int, int]] = []
            n_pages = 0
            for layer in layers:
                data = read_layer(r, release, layer)
                feats = data.features
                counts.append((layer, len(feats)))
                blocks: dict[str, list[str]] = {}
                for p in feats:
                    d = {m: rows.get(p["feature"], []) for m, rows in data.details.items()}
                    blocks.setdefault(page_name(layer, p["feature"]), []).append(
                        feature_html(layer, p, d, data.histograms.get(p["feature"])))
                last = feats[-1]["feature"] // PER_PAGE + 1 if feats else 0
                for name, sections in blocks.items():
                    block = int(name.rsplit("-", 1)[1].split(".")[0])
                    first = block * PER_PAGE
                    _write(tmp / name, page_html(release, layer, block, last, sections, first,
                                                 min(first + PER_PAGE - 1, feats[-1]["feature"]), report))
                    n_pages += 1
            _write(tmp / "style.css", CSS)
            _write(tmp / "search.js", search_data(search_rows(r, release)))
            _write(tmp / "index.html", index_html(release, counts, notes, ctx.run_id, report))
            swap(tmp, base / FOLDER, base / f".{FOLDER}.{ctx.run_id}.old")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        con.close()
    return Site(base / FOLDER, sum(n for _, n in counts), n_pages, time.perf_counter() - t0)
