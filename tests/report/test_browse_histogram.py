"""The feature pages' activation histogram and the linked features' descriptions.

rpt_feature_histogram against numpy's histogram of the lake's activations (20 equal-width bins
over [0, max], the last bin closed), the SVG on each page against the mart's counts, and the
pages' script (PAGE_JS, run by node on a minimal DOM) writing the descriptions of linked
features from search.js."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest

from saew.report.browse.assets import PAGE_JS
from saew.report.browse.render import HIST_H, histogram
from tests.report.browse_site import features, section

BINS = 20


def _q(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def _activations(home: Path) -> dict[tuple[int, int], np.ndarray]:
    """Every recorded value per (layer, feature), read from the lake's Parquet files directly
    (all files under the release: any further partition, such as shards, included)."""
    glob = str(home / "lake" / "activations" / "**" / "*.parquet")
    rows = duckdb.sql(f"SELECT layer, feature, list(value) FROM read_parquet('{glob}', hive_partitioning = true) "
                      "WHERE release = 'r' GROUP BY layer, feature").fetchall()
    return {(int(l), int(f)): np.asarray(v, dtype=np.float64) for l, f, v in rows}


def test_histogram_matches_numpy(site: Path):
    acts = _activations(site)
    mart: dict[tuple[int, int], dict[int, tuple[float, float, int]]] = {}
    for layer, feature, b, lo, hi, n in _q(site, "SELECT layer, feature, bin, lo, hi, n FROM rpt_feature_histogram "
                                                 "WHERE release = 'r'"):
        mart.setdefault((layer, feature), {})[b] = (lo, hi, n)
    active = {k: v[v > 0] for k, v in acts.items() if (v > 0).any()}
    assert set(mart) == set(active) and len(active) > 50
    for key, v in active.items():
        counts, edges = np.histogram(v, bins=BINS, range=(0.0, v.max()))
        got = mart[key]
        assert sorted(got) == [int(b) for b in np.flatnonzero(counts)], key          # non-empty bins only
        for b, (lo, hi, n) in got.items():
            assert n == counts[b], (key, b)
            assert lo == pytest.approx(edges[b], rel=1e-6, abs=1e-12) and hi == pytest.approx(edges[b + 1], rel=1e-6)
        assert BINS - 1 in got                                                         # the max is in the last bin
    # the counts of a feature add up to its tokens active on the page
    n_active = dict(((l, f), n) for l, f, n in _q(site, "SELECT layer, feature, n_active FROM rpt_feature_pages "
                                                      "WHERE release = 'r' AND n_active > 0"))
    assert n_active == {k: sum(n for _, _, n in got.values()) for k, got in mart.items()}


def _heights(path: str) -> list[int]:
    """Bar heights of a histogram path M0 H (V y h w)* V H z."""
    out: list[int] = []
    for y, w in re.findall(r"V(\d+)h(\d+)", path):
        out += [HIST_H - int(y)] * int(w)
    return out


def test_each_page_draws_the_marts_counts(site: Path):
    rows = _q(site, "SELECT layer, feature, list(bin ORDER BY bin), list(n ORDER BY bin) FROM rpt_feature_histogram "
                    "WHERE release = 'r' GROUP BY layer, feature")
    assert rows
    for layer, feature, bins, counts in rows:
        s = section(site, layer, feature)
        m = re.search(r'<div class=hist><svg viewBox="0 0 (\d+) 24" preserveAspectRatio=none><path d="(M0 24[^"]*V24z)"/>'
                      r"</svg><span class=m>histogram: (\d+) bins from 0 to [^;]+; tallest bin (\d+) tokens</span></div>", s)
        assert m, s[:600]
        assert int(m.group(1)) == int(m.group(3)) == BINS and int(m.group(4)) == max(counts)
        dense = np.zeros(BINS, int)
        dense[bins] = counts
        assert _heights(m.group(2)) == [math.ceil(HIST_H * n / max(counts)) for n in dense]
        assert s.index("<table>") < s.index("<div class=hist>") < s.index("<h3>")     # beside the statistics


def test_histogram_drawing():
    """Runs of equal height are one segment; a bin of 1 among 1000 is still drawn (ceil)."""
    svg = histogram([0, 1, 2, 5], [1000, 1000, 1, 7], 2.5)
    path = re.search(r'd="([^"]+)"', svg).group(1)
    assert path == "M0 24V0h2V23h1V24h2V23h1V24z"
    assert _heights(path) == [24, 24, 1, 0, 0, 1]
    assert "6 bins from 0 to 2.5; tallest bin 1000 tokens" in svg
    assert histogram([], [], None) == ""


def test_a_feature_without_activations_has_no_histogram(site: Path):
    dead = _q(site, "SELECT layer, feature FROM rpt_feature_pages WHERE release = 'r' AND coalesce(n_active, 0) = 0")
    for layer, feature in dead:
        assert "<div class=hist>" not in section(site, layer, feature)


NODE_PAGE = r"""
const fs = require('fs');
const [searchJs, pageJs] = process.argv.slice(2);
function link(text) {
  const a = {textContent: text, parentNode: null};
  a.parentNode = {kids: [a], insertBefore(n, ref) { this.kids.splice(this.kids.indexOf(ref), 0, n); }};
  return a;
}
const links = [link('L1/3'), link('L0/0'), link('L9/9'), link('L2/7')];
global.window = {};
global.document = {querySelectorAll: sel => (sel === '.lk a' ? links : []),
                   createElement: tag => ({tag: tag, className: '', textContent: ''})};
(0, eval)(fs.readFileSync(searchJs, 'utf8'));
(0, eval)(fs.readFileSync(pageJs, 'utf8'));
console.log(JSON.stringify(links.map(a => a.parentNode.kids.filter(k => k !== a).map(k => [k.className, k.textContent]))));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: headless Chromium checks the "
                                                          "pages' script instead (test_browse.py)")
def test_page_script_writes_linked_descriptions_from_search_js(site: Path, tmp_path: Path):
    js = features(site) / "search.js"
    data = json.loads(js.read_text()[len("window.SAEW = "):-2])
    d27 = next(d for l, f, d in data["features"] if (l, f) == (2, 7))
    assert len(d27) < 70                                   # the factory's descriptions are short: not cut
    (tmp_path / "page.js").write_text(PAGE_JS)
    (tmp_path / "harness.js").write_text(NODE_PAGE)
    r = subprocess.run(["node", str(tmp_path / "harness.js"), str(js), str(tmp_path / "page.js")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got[0] == [["m", "layer 1 feature 3: tokens about topic 3"]]
    assert got[1][0][1].startswith("<script>")                        # text (textContent), never markup
    assert got[2] == []                                               # no such feature: nothing added
    assert got[3] == [["m", d27]]
