"""``saew browse``: the static feature browser over the report warehouse (a real ``saew build``):
the index, its search data and the feature pages (description, contexts, logits, clusters,
lineage, co-activations, correlations, flags), every link resolving to a file and an anchor,
HTML-escaping, bad input, the folder swap, the report's link, and headless Chromium (skipped with
a reason where it is absent)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.factories import make_sae, put_sae, run_saew
from tests.factories_report import NASTY
from tests.report.browse_site import CHROMIUM, chromium as _chromium, features as _features, section as _section
from saew.report.browse.assets import page_name


def test_index_search_data_and_pages_exist(site: Path):
    folder = _features(site)
    assert {p.name for p in folder.iterdir()} == {"index.html", "search.js", "style.css",
                                                  "l0-0.html", "l1-0.html", "l2-0.html", "l3-0.html"}
    index = (folder / "index.html").read_text()
    assert '<script src="search.js"></script>' in index and 'id="q"' in index and 'id="results"' in index
    assert "http://" not in index and "https://" not in index and "fetch(" not in index
    js = (folder / "search.js").read_text()
    assert js.startswith("window.SAEW = ") and js.endswith(";\n")
    data = json.loads(js[len("window.SAEW = "):-2])
    assert len(data["features"]) == 4 * 24
    assert [1, 0, NASTY] in data["features"] and [2, 5, "layer 2 feature 5: tokens about topic 0"] in data["features"]
    for p in folder.glob("*.html"):
        assert "<script>alert" not in p.read_text(), p.name


def test_feature_page_shows_description_contexts_and_statistics(site: Path):
    s = _section(site, 0, 0)
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"quotes\"" in s        # escaped description
    assert "explainer: test" in s
    # contexts: the peak token shaded darkest, the nasty token escaped, quantile samples after the top ones
    assert s.count("<div class=ctx>") == 4 and s.index("Top contexts") < s.index("Quantile samples")
    assert "<i class=s9> &lt;b&gt;sat&lt;/b&gt;</i>" in s and "<b>sat</b>" not in s
    assert "<code> &lt;ok&gt;</code> 1" in s and "max act (neuronpedia)" in s           # logits, feature_stats
    assert "pass-through: yes (max pearson 0.97)" in s
    assert "Correlated next-layer features" in s and "<td>0.97<td>0.9<td>0.9" in s
    assert "Co-activating (NPMI)" in s and "decoder: " in s and "text: " in s
    con = duckdb.connect(str(site / "saew.duckdb"), read_only=True)
    try:
        top = con.sql("SELECT other_feature, npmi, jaccard, n_ab FROM rpt_feature_coactivation WHERE release = 'r' "
                      "AND layer = 0 AND feature = 0 ORDER BY rank").fetchall()
    finally:
        con.close()
    o, npmi, jaccard, n_ab = top[0]                    # the first co-activation row: the mart's numbers
    assert f"<tr><td><a href={page_name(0, o)}#f{o}>L0/{o}</a><td>{npmi:.3g}<td>{jaccard:.3g}<td>{n_ab}<tr>" in s
    later = _section(site, 1, 5)                       # no examples, no feature_stats: said so, nothing broken
    assert "no activation examples" in later and "Logits" not in later and "appearing: no" in later


def test_lineage_links_resolve_to_existing_sections(site: Path):
    s = _section(site, 1, 0)
    assert "match/decoder/folded:" in s and "match/decoder/random" not in s      # the null is no lineage
    # backward to L0/0, forward to L2/0 and L3/0 (folded matches are the identity), with cosines
    assert s.index("href=l0-0.html#f0>") < s.index("<b>this</b>") < s.index("href=l2-0.html#f0>")
    assert "cos 0.99" in s and "href=l3-0.html#f0>" in s
    folder = _features(site)
    for page in folder.glob("l*.html"):
        text = page.read_text()
        for name, feature in set(re.findall(r"href=(l\d+-\d+\.html)#f(\d+)>", text)):
            assert f"id=f{feature}>" in (folder / name).read_text(), (page.name, name, feature)


def test_report_links_to_the_browser_and_keeps_it(site: Path, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(site, home, ignore=shutil.ignore_patterns(".write.lock"))
    code, out, err = run_saew(home, "report", "--release", "r")
    assert code == 0, err
    report = (home / "reports" / "r" / "index.html").read_text()
    assert '<a href="features/index.html">Feature browser</a>' in report
    assert (_features(home) / "search.js").is_file()                       # kept through the report's swap
    # a rerun replaces the folder as a whole, leaving nothing behind
    (_features(home) / "stale.html").write_text("old")
    code, out, err = run_saew(home, "browse", "--release", "r")
    assert code == 0, err
    assert not (_features(home) / "stale.html").exists()
    assert not [p for p in (home / "reports" / "r").iterdir() if p.name.startswith(".")]
    assert 'href="../index.html"' in (_features(home) / "index.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["--release", "nope"], "--release 'nope': no SAE ingested for this release"),
    (["--release", "../r"], "release names must match"),
])
def test_bad_input_exits_2_and_writes_nothing(site: Path, tmp_path: Path, args, message):
    home = tmp_path / "home"
    shutil.copytree(site, home, ignore=shutil.ignore_patterns(".write.lock"))
    before = sorted(str(p) for p in (home / "reports").rglob("*"))
    code, out, err = run_saew(home, "browse", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("saew: error: ") and message in err
    assert sorted(str(p) for p in (home / "reports").rglob("*")) == before


def test_unbuilt_catalog_is_bad_input(tmp_path: Path):
    home = tmp_path / "home"
    put_sae(__import__("saew.storage.lake", fromlist=["Lake"]).Lake(home), "bare", 0, make_sae(8, 16, seed=0))
    code, out, err = run_saew(home, "browse", "--release", "bare")
    assert code == 2 and err.count("\n") == 1 and "run saew build first" in err
    assert not (home / "reports").exists()


# ---------------------------------------------------------------------------- the search script
NODE_HARNESS = r"""
const fs = require('fs');
const [searchJs, inlineJs, query] = process.argv.slice(2);
function el(tag) {
  return {tag: tag, children: [], firstChild: null, textContent: '', value: '', href: '', className: '',
          appendChild(c) { this.children.push(c); this.firstChild = this.children[0]; },
          removeChild(c) { this.children.splice(this.children.indexOf(c), 1); this.firstChild = this.children[0] || null; },
          addEventListener(name, fn) { this.listener = fn; }};
}
const els = {};
global.window = {location: {search: query}};
global.document = {getElementById: id => els[id] || (els[id] = el(id)), createElement: el,
                   createTextNode: t => ({text: t})};
(0, eval)(fs.readFileSync(searchJs, 'utf8'));
(0, eval)(fs.readFileSync(inlineJs, 'utf8'));
const hits = els.results.children.map(li => [li.children[0].href, li.children[0].textContent, li.children[1].text]);
console.log(JSON.stringify({box: els.q.value, count: els.count.textContent, hits: hits}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the search script is run by "
                                                          "headless Chromium below instead")
def test_search_script_reads_the_query_string_and_lists_matches(site: Path, tmp_path: Path):
    """The index's inline script, run by node against a minimal DOM: ?q= fills the box and lists the
    matching features (all terms, case-insensitive, over descriptions and ids) as links."""
    folder = _features(site)
    inline = re.search(r"<script>(.*?)</script>", (folder / "index.html").read_text(), re.S).group(1)
    (tmp_path / "inline.js").write_text(inline)
    (tmp_path / "harness.js").write_text(NODE_HARNESS)

    def search(query: str) -> dict:
        r = subprocess.run(["node", str(tmp_path / "harness.js"), str(folder / "search.js"),
                            str(tmp_path / "inline.js"), query], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    got = search("?q=L2+Topic%203")              # every term, anywhere in the ids or the description
    assert got["box"] == "L2 Topic 3"
    assert [h[0] for h in got["hits"]] == [f"l2-0.html#f{f}" for f in (3, 8, 13, 18, 23)]
    assert got["hits"][0][1:] == ["L2 / 3", " layer 2 feature 3: tokens about topic 3"]
    assert got["count"] == "5 features match"
    assert [h[0] for h in search("?q=L1/0")["hits"]] == ["l1-0.html#f0"]
    nasty = search("?q=%3Cscript%3E")["hits"]                   # shown as text (textContent), not markup
    assert [h[0] for h in nasty] == [f"l{l}-0.html#f0" for l in range(4)] and nasty[0][2] == " " + NASTY
    assert search("")["hits"] == [] and search("?q=%E0%A4%A")["count"].endswith("features match")


# ---------------------------------------------------------------------------- a real browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium); "
                                             "the feature browser's real-browser test needs it")
def test_search_and_feature_page_in_headless_chromium(site: Path, tmp_path: Path):
    folder = _features(site)
    # the search script reads ?q= on load and lists the matching features
    r = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom",
                  (folder / "index.html").as_uri() + "?q=topic%203")
    hits = re.findall(r'<a href="(l\d+-\d+\.html#f\d+)" class="hit">', r.stdout) or \
        re.findall(r'<a class="hit" href="(l\d+-\d+\.html#f\d+)">', r.stdout)
    assert "layer 2 feature 3: tokens about topic 3" in r.stdout, r.stderr[-2000:]
    assert "l2-0.html#f3" in hits and "features match" in r.stdout
    r = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom",
                  (folder / "index.html").as_uri() + "?q=L1/0")
    assert "l1-0.html#f0" in r.stdout
    # follow the link: the feature page shows its description and contexts
    r = _chromium(tmp_path, "--dump-dom", (folder / "l2-0.html").as_uri() + "#f3")
    assert "layer 2 feature 3: tokens about topic 3" in r.stdout and "Top contexts" in r.stdout
    assert "&lt;b&gt;sat&lt;/b&gt;" in r.stdout
    # its activation histogram (the SVG of rpt_feature_histogram's bins) and, written by the page's
    # script from search.js, the descriptions of the features its lineage links (not in the file itself)
    s3 = r.stdout[r.stdout.index('id="f3"'):]
    s3 = s3[:s3.index("</section>")]
    assert re.search(r'<div class="hist"><svg viewBox="0 0 20 24" preserveAspectRatio="none"><path d="M0 24[^"]*V24z"></path>', s3), s3[:3000]
    assert "histogram: 20 bins from 0 to" in s3
    neighbour = "layer 1 feature 3: tokens about topic 3"          # L1/3, one folded step back
    assert neighbour in s3 and neighbour not in (folder / "l2-0.html").read_text()
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", (folder / "l0-0.html").as_uri())
    assert shot.is_file()
    from matplotlib.image import imread

    img = np.asarray(imread(shot))[..., :3]
    assert img.std() > 0.05 and (img < 0.9).any(axis=2).mean() > 0.02         # not blank
    steel = np.abs(img - np.array([0x46, 0x82, 0xb4]) / 255).max(axis=2) < 0.03   # the histogram's bars are drawn
    assert steel.sum() > 50, steel.sum()
