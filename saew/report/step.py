"""``saew plot`` and ``saew report``: PNG plots and one static HTML report of a release.

Everything is read from the catalog's dbt models (the marts and the ``rpt_`` models of
models/report/) through SQL: dbt computes every number (the Sankey's "other" bucket, the
quantiles, the null bands, the findings' verdicts), Python selects rows and draws. A plot whose
model is missing or empty is skipped with a note naming the step to run ("no data: run saew
cluster"). The page opens with the findings (what each link shows beyond its null).

Output: ``<home>/reports/<release>/`` holding the PNGs (and ``index.html`` for ``report``).
The folder is built under a temporary name beside it and swapped in as a whole; each PNG is
itself written to a temporary name and renamed.
"""
from __future__ import annotations

import shutil
import sys

from saew.report.html import render_html, swap, write_page
from saew.report.items import Item, Result, Table, Text
from saew.report.read import DEFAULT_SANKEY_PAIRS, Reader, Setup, parse_pairs, release_layers, thresholds


def _add_common(p) -> None:
    p.add_argument("--release", required=True, help="release to plot")
    p.add_argument("--pairs", default=None,
                   help="layer pairs for the Sankey diagrams, e.g. 5-6,8-9 (default: "
                        f"{DEFAULT_SANKEY_PAIRS} evenly spaced adjacent pairs)")


def add_arguments_plot(p) -> None:
    _add_common(p)


def add_arguments_report(p) -> None:
    _add_common(p)


def add_arguments(p) -> None:  # the CLI falls back to this name
    _add_common(p)


def run_plot(args, ctx) -> str:
    res = build(ctx, args.release, args.pairs, html_report=False)
    lines = [f"{len(res.files)} plots in {res.folder}"]
    lines += [f"  {it.title}: {it.note}" for it in res.items if it.note]
    return "\n".join(lines)


def run_report(args, ctx) -> str:
    res = build(ctx, args.release, args.pairs, html_report=True)
    return str(res.folder / "index.html")


def run(args, ctx) -> str:
    return run_report(args, ctx) if args._words[-1] == "report" else run_plot(args, ctx)


def _guard(fn, r: Reader, s: Setup, fallback):
    """Run one plot/table; a failure becomes a note (the report never crashes on one plot)."""
    import duckdb

    try:
        return fn(r, s)
    except duckdb.Error as e:
        msg = str(e).splitlines()[0]
    except (ValueError, TypeError, IndexError, KeyError) as e:
        msg = f"{type(e).__name__}: {e}"
    print(f"saew: warning: {fn.__name__}: {msg}", file=sys.stderr)
    return fallback(f"could not draw: {msg}")


def _setup(r: Reader, release: str, pairs: str | None, out) -> Setup:
    """The release's layers (rpt_release; bad input if it has no SAE) and the Sankey pairs."""
    from saew.errors import BadInput

    layers = release_layers(r, release)
    if layers is None:
        if pairs is not None:
            raise BadInput(f"--pairs {pairs!r}: the catalog has no report models to check them against "
                           "(run saew build first)")
        print(f"saew: warning: the catalog has no report models (run saew build); release {release!r} "
              "is not checked", file=sys.stderr)
        return Setup(release, None, [], out, thresholds(r))
    return Setup(release, layers, parse_pairs(pairs, layers, release), out, thresholds(r))


def keep_browser(final, tmp, release: str, stub: bool) -> None:
    """The report folder is replaced whole: carry ``saew browse``'s features/ over into the new
    one, or (with ``stub``, for the report) leave a page there naming the command, so the
    report's link always resolves."""
    import os

    old, new = final / "features", tmp / "features"
    if (old / "index.html").is_file():
        os.replace(old, new)
        return
    if not stub:
        return
    from saew.report.html import h

    new.mkdir()
    (new / "index.html").write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>feature browser</title></head>'
        f'<body><p>The feature browser of {h(release)} is not built yet: run saew browse --release '
        f'{h(release)}.</p><p><a href="../index.html">report</a></p></body></html>\n', encoding="utf-8")


def build(ctx, release: str, pairs: str | None, html_report: bool) -> Result:
    """Draw every plot (and the HTML) into a fresh folder, then swap it in for the old one."""
    from saew.report.sections import PLOTTERS, TABLES, TEXTS
    from saew.storage import catalog

    reports = ctx.home / "reports"
    tmp = reports / f".{release}.{ctx.run_id}.tmp"
    final = reports / release
    con = catalog.connect(ctx.lake, read_only=True)
    try:
        r = Reader(con)
        s = _setup(r, release, pairs, tmp)          # bad input: raised before anything is written
        reports.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            items: list[Item] = []
            for sec, fn in PLOTTERS:
                items += _guard(fn, r, s, lambda note, sec=sec, fn=fn: [Item(sec, fn.__name__, "", note=note)])
            tables: list[Table] = []
            texts: list[Text] = []
            if html_report:
                for sec, fn in TEXTS:
                    texts += _guard(fn, r, s, lambda note, sec=sec, fn=fn: [Text(sec, fn.__name__, note=note)])
                for sec, fn in TABLES:
                    got = _guard(fn, r, s, lambda note, sec=sec, fn=fn: Table(sec, fn.__name__, "", note=note))
                    tables += got if isinstance(got, list) else [got]
                write_page(tmp, render_html(release, s.layers, items, tables, texts, ctx.run_id))
            keep_browser(final, tmp, release, stub=html_report)
            swap(tmp, final, reports / f".{release}.{ctx.run_id}.old")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        con.close()
    return Result(final, items, tables, texts)
