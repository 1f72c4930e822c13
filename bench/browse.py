"""Benchmark: ``saew browse`` on a real warehouse (the smollm2 demo: 30 layers x 2,304 = 69,120
features). Target (issue 18): the site within 60 s; its size on disk reported.

Run it on a COPY of a built home (it writes <home>/reports/<release>/features/):

    cp -r /work/homes/smollm2-before /tmp/a2/ && .venv/bin/saew build --home /tmp/a2/smollm2-before
    .venv/bin/python bench/browse.py --home /tmp/a2/smollm2-before --release demo-smollm2

Prints the wall and CPU time of the command (``saew browse`` as a subprocess, start-up included), the
number of features, pages and files, the site's apparent size and its disk usage (blocks), the
bytes per feature, with --breakdown the bytes of each part of the pages (statistics, contexts,
lineage, ...), and, with --per-feature, what the alternative layout (one file per feature)
would cost: the same sections each written to its own file, timed, and its disk usage.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def usage(folder: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, bytes on disk) of a folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files), sum(p.stat().st_blocks * 512 for p in files)


def per_feature(folder: Path) -> tuple[float, int, int, int]:
    """Split every page into one file per feature (head + section) in a temporary folder:
    (seconds to write, files, apparent bytes, bytes on disk)."""
    pages = sorted(folder.glob("l*.html"))
    texts = [p.read_text() for p in pages]
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        for page, text in zip(pages, texts):
            head = text[:text.index("<h1>")]
            layer = page.stem.split("-")[0]
            for m in re.finditer(r'<section class="?feat"? id="?f(\d+)"?>.*?</section>', text, re.S):
                (out / f"{layer}-f{m.group(1)}.html").write_text(head + m.group(0) + "</body></html>\n")
        seconds = time.perf_counter() - t0
        n, apparent, disk = usage(out)
    return seconds, n, apparent, disk


def _bytes(s: str) -> int:
    return len(s.encode("utf-8"))


def breakdown(folder: Path) -> dict[str, int]:
    """Bytes of the pages by part: each section's head (title, description, statistics and
    histogram) and each <h3> part (contexts, lineage, ...), the rest (page heads, scripts) as 'page'
    (either markup: quoted attributes, as before this wave, or not)."""
    parts: dict[str, int] = {}
    for page in folder.glob("l*.html"):
        text = page.read_text()
        inside = 0
        for m in re.finditer(r'<section class="?feat"? id="?f\d+"?>(.*?)</section>', text, re.S):
            body = m.group(1)
            inside += _bytes(m.group(0))
            pieces = re.split(r"(?=<h3>)", body)
            parts["head + statistics"] = parts.get("head + statistics", 0) + _bytes(pieces[0])
            for piece in pieces[1:]:
                name = piece[4:piece.index("</h3>")]
                parts[name] = parts.get(name, 0) + _bytes(piece)
        parts["page"] = parts.get("page", 0) + _bytes(text) - inside
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path, help="a built warehouse (a copy: it is written to)")
    ap.add_argument("--release", required=True)
    ap.add_argument("--per-feature", action="store_true", help="also measure one file per feature")
    ap.add_argument("--breakdown", action="store_true", help="also print the pages' bytes by part")
    a = ap.parse_args()
    saew = str(ROOT / ".venv" / "bin" / "saew")
    t0 = time.perf_counter()
    r = subprocess.run([saew, "browse", "--home", str(a.home), "--release", a.release],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"saew browse failed ({r.returncode}): {r.stderr.strip()}")
    folder = Path(r.stdout.strip()).parent
    js = (folder / "search.js").read_text()
    n_features = len(json.loads(js[js.index("{"):js.rindex("}") + 1])["features"])
    n, apparent, disk = usage(folder)
    pages = len(list(folder.glob("l*.html")))
    print(f"saew browse: {wall:.1f} s wall (target 60 s), {ru.ru_utime + ru.ru_stime:.1f} s CPU; "
          f"{n_features} features, {pages} pages, {n} files; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"site: {apparent / 1e6:.1f} MB apparent, {disk / 1e6:.1f} MB on disk, "
          f"{apparent / max(n_features, 1):.0f} bytes per feature; search.js {os.path.getsize(folder / 'search.js') / 1e6:.1f} MB; "
          f"largest page {max(p.stat().st_size for p in folder.glob('l*.html')) / 1e6:.2f} MB")
    if a.breakdown:
        for name, n in sorted(breakdown(folder).items(), key=lambda kv: -kv[1]):
            print(f"  {name:32s} {n / 1e6:8.1f} MB  {n / max(n_features, 1):6.0f} bytes per feature")
    if a.per_feature:
        s, n2, ap2, d2 = per_feature(folder)
        print(f"one file per feature instead: {n2} files written in {s:.1f} s (the sections only), "
              f"{ap2 / 1e6:.1f} MB apparent, {d2 / 1e6:.1f} MB on disk")


if __name__ == "__main__":
    main()
