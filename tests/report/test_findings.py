"""The null as a distribution and the findings that open the report, on the report warehouse:
three null draws (random, random.1, random.2) and layer 2 of decoder space without structure.
The marts are checked against numpy over the draws; the page against the marts."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.factories import run_saew
from tests.factories_report import NO_STRUCTURE, NULL_DRAWS, built_report_warehouse

RATES = ["survive_rate", "split_rate", "vanish_rate", "merge_rate", "birth_rate", "mean_leak",
         "h_cond_mean", "h_aug_mean", "mi_cond", "mi_aug"]
REPORT = Path(__file__).resolve().parents[2] / "saew" / "report"


@pytest.fixture(scope="module")
def built() -> Path:
    return built_report_warehouse()


def _q(home: Path, sql: str) -> list[dict]:
    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    try:
        rel = con.sql(sql)
        return [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    finally:
        con.close()


def _page(home: Path) -> str:
    return (home / "reports" / "r" / "index.html").read_text()


def test_null_over_draws_matches_numpy(built: Path):
    """null_<rate> = mean, null_<rate>_sd = sample sd (ddof 1) over the draws' fct_layer_evolution
    rows; z = (rate - mean) / sd; beyond = outside mean +- 2 sd (+- 2 clusters' worth when sd = 0)."""
    evo = _q(built, "SELECT * FROM fct_layer_evolution WHERE release = 'r'")
    draws = [e for e in evo if e["is_null"]]
    assert sorted({e["link"] for e in draws}) == ["match/decoder/random", "match/decoder/random.1",
                                                  "match/decoder/random.2"]
    rows = _q(built, "SELECT * FROM fct_layer_evolution_vs_null WHERE release = 'r'")
    assert rows and not any(r["link"].startswith("match/decoder/random") for r in rows)
    assert len(rows) == sum(1 for e in evo if not e["is_null"])
    n_beyond = 0
    for r in rows:
        ds = [e for e in draws if (e["cluster_space"], e["src_layer"]) == (r["cluster_space"], r["src_layer"])]
        assert r["n_null_draws"] == len(ds) == NULL_DRAWS
        for col in RATES:
            v = np.array([d[col] for d in ds if d[col] is not None], dtype=float)
            mean, sd = v.mean(), v.std(ddof=1)
            assert r[f"null_{col}"] == pytest.approx(mean, abs=1e-12)
            assert r[f"null_{col}_sd"] == pytest.approx(sd, abs=1e-12)
            if sd > 1e-12:
                z = (r[col] - mean) / sd
                assert r[f"{col}_z"] == pytest.approx(z, abs=1e-9)
                assert r[f"{col}_beyond_null"] == (abs(z) > 2)
            else:  # all draws equal: the band is 2 clusters' worth for the counting rates
                n = {"survive_rate": r["n_src_clusters"], "split_rate": r["n_src_clusters"],
                     "vanish_rate": r["n_src_clusters"], "merge_rate": r["n_dst_clusters"],
                     "birth_rate": r["n_dst_clusters"]}.get(col)
                half = 2.0 / n if n else 0.0
                assert r[f"{col}_z"] is None
                assert r[f"{col}_beyond_null"] == (abs(r[col] - mean) > max(half, 1e-12))
            n_beyond += bool(r[f"{col}_beyond_null"])
    assert n_beyond > 0                      # the identity-like folded matches beat the null somewhere


def test_lineage_skips_the_later_draws(built: Path):
    for mart in ("fct_feature_lineage", "fct_feature_persistence", "rpt_persistence_histogram",
                 "rpt_match_quantiles"):
        links = {r["link"] for r in _q(built, f"SELECT DISTINCT link FROM {mart}")}
        assert links == {"match/decoder/folded", "match/decoder/random"}, mart
    links = {r["link"]: r for r in _q(built, "SELECT * FROM dim_links")}
    assert [links[f"match/decoder/random.{i}"]["null_draw"] for i in range(1, NULL_DRAWS)] == list(range(1, NULL_DRAWS))


def test_findings_verdicts_follow_structure_and_the_null(built: Path):
    layer, space = NO_STRUCTURE
    rows = _q(built, "SELECT * FROM rpt_layer_findings WHERE release = 'r'")
    for r in rows:
        touches = r["cluster_space"] == space and layer in (r["src_layer"], r["dst_layer"])
        assert (r["verdict"] == "no structure") == touches, r
        if not touches:
            beyond = any(r[f"{c}_beyond_null"] for c in RATES[:5])
            assert r["verdict"] == ("beyond null" if beyond else "within null")
        sd = r["null_survive_rate_sd"]
        half = 2 * sd if sd > 1e-12 else 2.0 / r["n_src_clusters"]  # sd 0: 2 clusters' worth
        # the printed band is clipped to [0, 1], the range of a rate
        assert r["null_survive_rate_lo"] == pytest.approx(max(r["null_survive_rate"] - half, 0.0))
        assert r["null_survive_rate_hi"] == pytest.approx(min(r["null_survive_rate"] + half, 1.0))
        for c in RATES[:6]:
            if r[f"null_{c}_lo"] is None:             # a rate without a null value (no band)
                continue
            lo, mean, hi = r[f"null_{c}_lo"], r[f"null_{c}"], r[f"null_{c}_hi"]
            assert 0.0 <= lo <= mean + 1e-12 and mean - 1e-12 <= hi <= 1.0, (c, r)
    series = _q(built, "SELECT * FROM rpt_evolution_series WHERE release = 'r' AND is_null")
    assert series
    for s in series:
        for c in RATES:
            if s[f"{c}_lo"] is None:
                continue
            top = 1.0 if c in RATES[:6] else float("inf")           # entropies and MI: no upper end
            assert 0.0 <= s[f"{c}_lo"] <= s[c] + 1e-12 and s[c] - 1e-12 <= s[f"{c}_hi"] <= top, (c, s)
    per_link = _q(built, "SELECT * FROM rpt_link_findings WHERE release = 'r'")
    assert sum(l["n_pairs"] for l in per_link) == len(rows)
    assert sum(l["n_no_structure"] for l in per_link) == sum(r["verdict"] == "no structure" for r in rows) == 4


def test_the_report_opens_with_the_findings(built: Path):
    page = _page(built)
    h2 = re.findall(r'<h2 id="([^"]+)">', page)
    assert h2[:3] == ["findings", "cluster-quality", "release"]
    findings = page[page.index('<h2 id="findings">'):page.index('<h2 id="cluster-quality">')]
    assert page.index('<h2 id="findings">') < page.index("<table")          # before any table
    assert "beyond the null at" in findings
    assert f"{space_clusters()}: no structure at layer {NO_STRUCTURE[0]} " in findings
    # the headline link's table: pairs touching the layer without structure show no rates
    table = findings[findings.index("Findings: match/decoder/folded (decoder clusters)"):]
    table = table[:table.index("</table>")]
    for pair in ("1 -&gt; 2", "2 -&gt; 3"):
        row = re.search(rf"<tr><td>{pair}</td>(.*?)</tr>", table).group(1)
        assert row.count("no structure") == 7                                # the verdict and six rates
    row = re.search(r"<tr><td>0 -&gt; 1</td>(.*?)</tr>", table).group(1)
    assert "no structure" not in row and "band" in row
    quality = page[page.index('<h2 id="cluster-quality">'):page.index('<h2 id="release">')]
    assert quality.count("<tr>") == 1 + 8                                    # header + 4 layers x 2 spaces


def space_clusters() -> str:
    return f"{NO_STRUCTURE[1]} clusters"


def test_captions_show_the_vars_of_the_build(built: Path, tmp_path: Path):
    """Thresholds reach the captions through rpt_thresholds, as `saew build --vars` set them."""
    home = tmp_path / "home"
    shutil.copytree(built, home, ignore=shutil.ignore_patterns(".write.lock"))
    code, out, err = run_saew(home, "build", "--quiet", "--select", "rpt_thresholds",
                              "--vars", "{survive_threshold: 0.6, persistence_cosine: 0.8, null_band_z: 3}")
    assert code == 0, out + err
    code, out, err = run_saew(home, "report", "--release", "r")
    assert code == 0, err
    page = _page(home)
    assert "M_ab &gt;= 0.6;" in page and "M_ab &gt;= 0.5;" not in page
    assert "keeps a cosine &gt;= 0.8" in page and "plus or minus 3 standard deviations" in page


def test_the_report_reads_only_dbt_models():
    """Every table the report's SQL names is a dbt mart or rpt_ model; no lake view, no lake reader."""
    names: set[str] = set()
    for py in REPORT.rglob("*.py"):
        text = py.read_text()
        assert "saew.storage.saes" not in text and "storage.lake" not in text, py
        names |= set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)", text))
    names.discard("information_schema")
    assert names and all(n.startswith(("rpt_", "fct_", "dim_")) for n in names), sorted(names)
