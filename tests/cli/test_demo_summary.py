"""The demo's summary: each space's survive and merge rates beside their null band, "no
structure" where a layer has none, one plain sentence per space, and a one-line fallback."""
from __future__ import annotations

import duckdb
import pytest

from saew.cli.commands import build_parser
from saew.cli.demo import _parse, _steps, findings, summary
from saew.storage.context import Context
from saew.storage.lake import Lake
from tests.factories_dbt import built_small_warehouse

COLS = ["release", "cluster_space", "link", "src_layer", "dst_layer", "n_src_clusters",
        "src_has_structure", "dst_has_structure", "survive_rate", "null_survive_rate",
        "null_survive_rate_sd", "survive_rate_beyond_null", "merge_rate", "null_merge_rate",
        "null_merge_rate_sd", "merge_rate_beyond_null", "verdict"]
F, T = "match/decoder/folded", "match/text/cosine"
ROWS = [
    # decoder: above, within, below, within, no structure (layer 4 has none) -> within leads
    ("r", "decoder", F, 0, 1, 20, True, True, 0.60, 0.30, 0.05, True, 0.10, 0.20, 0.02, True, "beyond null"),
    ("r", "decoder", F, 1, 2, 18, True, True, 0.33, 0.30, 0.05, False, 0.21, 0.20, 0.02, False, "within null"),
    ("r", "decoder", F, 2, 3, 22, True, True, 0.10, 0.30, 0.05, True, 0.20, 0.20, 0.02, False, "beyond null"),
    ("r", "decoder", F, 3, 4, 19, True, False, 0.31, 0.30, 0.05, False, 0.20, 0.20, 0.02, False, "no structure"),
    ("r", "decoder", F, 4, 5, 2, False, True, 0.50, 0.30, 0.05, True, 0.50, 0.20, 0.02, True, "no structure"),
    # text: above at 2 of 3
    ("r", "text", T, 0, 1, 150, True, True, 0.80, 0.40, 0.10, True, 0.05, 0.10, 0.01, True, "beyond null"),
    ("r", "text", T, 1, 2, 160, True, True, 0.75, 0.40, 0.10, True, 0.10, 0.10, 0.01, False, "beyond null"),
    ("r", "text", T, 2, 3, 155, True, True, 0.45, 0.40, 0.10, False, 0.10, 0.10, 0.01, False, "within null"),
    # another link and release: left out
    ("r", "decoder", "match/decoder/cosine", 0, 1, 20, True, True, 0.9, 0.3, 0.05, True, 0.1, 0.2, 0.02, True, "beyond null"),
    ("other", "decoder", F, 0, 1, 20, True, True, 0.9, 0.3, 0.05, True, 0.1, 0.2, 0.02, True, "beyond null"),
]


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("CREATE TABLE rpt_layer_findings (release VARCHAR, cluster_space VARCHAR, link VARCHAR, "
              "src_layer INT, dst_layer INT, n_src_clusters INT, src_has_structure BOOLEAN, "
              "dst_has_structure BOOLEAN, survive_rate DOUBLE, null_survive_rate DOUBLE, "
              "null_survive_rate_sd DOUBLE, survive_rate_beyond_null BOOLEAN, merge_rate DOUBLE, "
              "null_merge_rate DOUBLE, null_merge_rate_sd DOUBLE, merge_rate_beyond_null BOOLEAN, "
              "verdict VARCHAR)")
    c.executemany(f"INSERT INTO rpt_layer_findings VALUES ({', '.join('?' * len(COLS))})", ROWS)
    c.execute("ALTER TABLE rpt_layer_findings ADD COLUMN n_null_draws INT DEFAULT 10")
    for r in ("survive_rate", "merge_rate"):  # the band as the mart gives it: mean +- 2 sd
        for end, sign in (("lo", "-"), ("hi", "+")):
            c.execute(f"ALTER TABLE rpt_layer_findings ADD COLUMN null_{r}_{end} DOUBLE")
            c.execute(f"UPDATE rpt_layer_findings SET null_{r}_{end} = null_{r} {sign} 2 * null_{r}_sd")
    yield c
    c.close()


def test_findings_show_rates_with_their_null_band_and_say_what_they_mean(con):
    text = "\n".join(findings(con, "r"))
    lines = text.splitlines()
    assert lines[0] == ("  decoder clusters, link match/decoder/folded (null: 10 random matchings; "
                        "band = mean +- 2 sd; * beyond it):")
    row = next(ln for ln in lines if ln.strip().startswith("0 -> 1"))
    assert "0.600 [0.200, 0.400] *" in row and "0.100 [0.160, 0.240] *" in row
    row = next(ln for ln in lines if ln.strip().startswith("1 -> 2"))
    assert "0.330 [0.200, 0.400]" in row and "0.210 [0.160, 0.240]" in row and "*" not in row
    for pair in ("3 -> 4", "4 -> 5"):
        row = next(ln for ln in lines if ln.strip().startswith(pair))
        assert row.endswith("no structure") and "0." not in row
    assert "    no structure at layer 4" in lines
    assert ("  decoder clusters: folded-match survival is above the null band at only 1 of 5 layer "
            "pairs (within it at 1, below it at 1, no structure at 2): most layer pairs show nothing "
            "beyond a random matching.") in lines
    # within the band at most pairs: the sentence leads with that
    con.execute("UPDATE rpt_layer_findings SET verdict = 'within null', survive_rate_beyond_null = false "
                "WHERE link = ? AND src_layer IN (2, 3)", [F])
    assert ("  decoder clusters: folded-match survival is within the null band at 3 of 5 layer pairs "
            "(above it at 1, no structure at 1): most layer pairs show nothing beyond a random "
            "matching.") in findings(con, "r")
    assert any(ln.startswith("  text clusters, link match/text/cosine (null: 10") for ln in lines)
    assert ("  text clusters: cosine-match survival is above the null band at 2 of 3 layer pairs "
            "(within it at 1).") in lines
    assert "0.900" not in text  # other links and releases are left out


def test_findings_without_the_mart_is_one_line():
    c = duckdb.connect()
    out = findings(c, "r")
    assert len(out) == 1 and "rpt_layer_findings" in out[0] and "saew build" in out[0]


def test_findings_of_a_space_without_rows(con):
    con.execute("DELETE FROM rpt_layer_findings WHERE cluster_space = 'text'")
    out = findings(con, "r")
    i = out.index("  text clusters, link match/text/cosine:")
    assert out[0].startswith("  decoder clusters, link match/decoder/folded (null: 10")
    assert out[i + 1].startswith("    no layer pairs")


def test_summary_on_a_built_warehouse():
    """The real mart when it is built (else the fallback), through the demo's own summary."""
    home, w = built_small_warehouse()
    text = summary(Context(lake=Lake(home), run_id="t"), w.release, 60.0, [])
    assert text.startswith(f"saew demo: release {w.release!r} done in 1.0 min")
    assert "layers: 3, features: 28 (8 per layer)" in text
    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    try:
        has_mart = bool(con.execute("SELECT count(*) FROM information_schema.tables "
                                    "WHERE table_name = 'rpt_layer_findings'").fetchone()[0])
    finally:
        con.close()
    if has_mart:  # one random draw of the decoder space, none of the text space: no band
        lines = text.splitlines()
        assert ("  decoder clusters, link match/decoder/folded (null: 1 random matching; "
                "band = mean +- 2 sd; * beyond it):") in lines
        assert any(ln.split()[:3] == ["0", "->", "1"] and "1.000 (null 0.500, no band)" in ln for ln in lines)
        assert any(ln.startswith("  text clusters, link match/text/cosine (null: 0") for ln in lines)
        assert "1.000 (no null)" in text
        for space in ("decoder", "text"):
            assert (f"  {space} clusters: no null band to compare with (it takes at least two null draws); "
                    f"run saew match --space {space} --method random and saew build.") in lines
    else:
        assert sum("rpt_layer_findings" in ln for ln in text.splitlines()) == 1


def test_demo_steps_draw_the_null_in_both_spaces_and_ask_for_stability():
    from types import SimpleNamespace

    args = SimpleNamespace(model="minilm", corpus="builtin", layers="all", arch="topk", d_sae=None)
    steps = dict(_steps(args, "demo-minilm", 100))
    for space in ("decoder", "text"):
        argv = steps[f"match ({space}, random null)"]
        assert argv[argv.index("--space") + 1] == space and argv[argv.index("--method") + 1] == "random"
        assert argv[argv.index("--draws") + 1] == "10"
        assert "--stability" in steps[f"cluster ({space})"]
    parser = build_parser()
    for argv in steps.values():  # every step parses (an OPTIONAL option not taken yet is dropped)
        assert _parse(parser, argv + ["--home", "/tmp/x", "--seed", "0"])._words == (argv[0],)
    sub = _parse(parser, steps["cluster (decoder)"] + ["--home", "/tmp/x"])
    assert sub.space == "decoder"  # --stability taken, or dropped while saew cluster lacks it
    with pytest.raises(SystemExit):
        _parse(parser, steps["cluster (decoder)"] + ["--bogus", "1"])
