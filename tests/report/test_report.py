"""``saew plot`` / ``saew report``: every plot drawn from a real ``saew build``, graceful "no
data" notes, bad input, folder replacement, the Sankey layout, and a headless-Chromium
screenshot of the page (skipped with a reason where Chromium is absent)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.factories import make_sae, put_sae, run_saew
from tests.factories_report import NASTY, built_report_warehouse
from saew.report import html as report_html
from saew.report import plots, read
from saew.report.items import Table
from saew.report.sections import flows
from saew.storage.lake import Lake

EXPECTED_PNGS = {
    "sankey_decoder_match-decoder-folded.png", "sankey_decoder_transport-decoder-emd.png",
    "sankey_text_match-decoder-folded.png",
    "evolution_decoder.png", "evolution_text.png", "entropy_decoder.png", "entropy_text.png",
    "clusters_per_layer.png", "umap_decoder.png", "umap_text.png",
    "coactivation_lift.png", "coactivation_degree.png",
    "matching_decoder.png", "persistence.png", "reconstruction.png", "training.png",
}


@pytest.fixture(scope="module")
def built() -> Path:
    """A 4-layer release with every table the report reads, built with the real dbt project,
    and its report (made once per session: saew report exits 0, prints the page's path and
    warns about nothing). Tests that write copy it first."""
    return built_report_warehouse()


def _copy(home: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(home, dst, ignore=shutil.ignore_patterns(".write.lock"))
    return dst


def _not_blank(png: Path) -> float:
    """Pixel standard deviation of an image (0 for a single-colour picture)."""
    from matplotlib.image import imread

    return float(np.asarray(imread(png))[..., :3].std())


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


# ---------------------------------------------------------------------------- the full report
def test_report_draws_every_plot_from_the_marts(built: Path):
    folder = built / "reports" / "r"
    pngs = {p.name for p in folder.glob("*.png")}
    assert pngs == EXPECTED_PNGS
    for name in EXPECTED_PNGS:
        assert _not_blank(folder / name) > 0.02, name
    page = (folder / "index.html").read_text()
    assert "no data" not in page and "could not draw" not in page
    # every asset is a local file beside the page; nothing remote, no scripts
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert srcs and all(s.startswith("#") or (folder / s).is_file() for s in srcs)
    assert set(s for s in srcs if not s.startswith("#")) == EXPECTED_PNGS | {"features/index.html"}
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # captions and the tables from the marts, HTML-escaped
    assert page.count("<figcaption>") == len(EXPECTED_PNGS)
    assert "Most persistent features" in page and "Cluster fates" in page
    assert "Layer evolution against the null: match/decoder/folded vs match/decoder/random" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    # nothing left over from the atomic writes
    assert not list(folder.glob(".*")) and [p.name for p in (built / "reports").iterdir()] == ["r"]


def test_tables_match_the_marts(built: Path):
    """The persistence table shows the mart's top rows, in order, with their descriptions."""
    con = duckdb.connect(str(built / "saew.duckdb"), read_only=True)
    top = con.sql("SELECT layer, feature, persistence FROM fct_feature_persistence WHERE release = 'r' "
                  "AND link = 'match/decoder/folded' ORDER BY persistence DESC, layer, feature LIMIT 3").fetchall()
    con.close()
    assert top[0][:2] == (0, 0) and top[0][2] == 3          # feature 0 persists through all 3 steps
    page = (built / "reports" / "r" / "index.html").read_text()
    section = page[page.index("Most persistent features"):]
    cells = re.findall(r'<tr><td class="num">(\d+)</td><td class="num">(\d+)</td><td class="num">(\d+)</td>', section)
    assert [tuple(map(int, c)) for c in cells[:3]] == top


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="chromium is not installed (.ci/run installs Debian's chromium); "
                           "the report screenshot test needs it")
def test_report_renders_in_headless_chromium(built: Path, tmp_path: Path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    index = built / "reports" / "r" / "index.html"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1280,2000", index.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    from matplotlib.image import imread

    img = np.asarray(imread(shot))[..., :3]
    assert img.shape[:2] == (2000, 1280)
    assert img.std() > 0.05                                  # not blank
    non_white = (img < 0.9).any(axis=2)
    assert non_white.mean() > 0.02                           # text and plots were drawn
    assert non_white[1000:].mean() > 0.01                    # images (further down) loaded too


# ---------------------------------------------------------------------------- plot, pairs, rerun
def test_plot_pairs_and_folder_replaced_as_a_whole(built: Path, tmp_path: Path):
    home = _copy(built, tmp_path)
    folder = home / "reports" / "r"
    (folder / "stale.png").write_bytes(b"old")
    default_width = _png_width(folder / "sankey_decoder_match-decoder-folded.png")
    code, out, err = run_saew(home, "plot", "--release", "r", "--pairs", "1-2")
    assert code == 0, err
    assert out.splitlines()[0] == f"{len(EXPECTED_PNGS)} plots in {folder}"
    # no index.html, no stale file; the feature browser's folder (here the report's stub) is kept
    assert {p.name for p in folder.iterdir()} == EXPECTED_PNGS | {"features"}
    # one Sankey panel instead of the default three
    assert _png_width(folder / "sankey_decoder_match-decoder-folded.png") < default_width / 2
    assert [p.name for p in (home / "reports").iterdir()] == ["r"]
    runs = Lake(home).query("SELECT command FROM runs ORDER BY started_at").column("command").to_pylist()
    assert runs[-2:] == ["report", "plot"]


def _png_width(path: Path) -> int:
    from matplotlib.image import imread

    return imread(path).shape[1]


@pytest.mark.parametrize("args, message", [
    (["--release", "nope"], "--release 'nope': no SAE ingested for this release"),
    (["--release", "../r"], "release names must match"),
    (["--release", "r", "--pairs", "0-2"], "0-2 is not a pair of adjacent layers of release 'r' (layers: 0, 1, 2, 3)"),
    (["--release", "r", "--pairs", "1-2,x"], "expected layer pairs like 5-6,8-9, got 'x'"),
    (["--release", "r", "--pairs", "2-1"], "2-1 is not a pair of adjacent layers"),
])
@pytest.mark.parametrize("command", ["plot", "report"])
def test_bad_input_exits_2_and_writes_nothing(built: Path, tmp_path: Path, command, args, message):
    home = _copy(built, tmp_path)
    before = _snapshot(home / "reports")
    n_runs = Lake(home).query("SELECT count(*) AS n FROM runs").column("n")[0].as_py()
    code, out, err = run_saew(home, command, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("saew: error: ") and message in err
    assert _snapshot(home / "reports") == before
    assert Lake(home).query("SELECT count(*) AS n FROM runs").column("n")[0].as_py() == n_runs


# ---------------------------------------------------------------------------- graceful degradation
def test_report_without_marts_or_results_notes_what_to_run(tmp_path: Path):
    home = tmp_path / "home"
    lake = Lake(home)
    for layer in (0, 1):
        put_sae(lake, "bare", layer, make_sae(8, 16, seed=layer))
    code, out, err = run_saew(home, "report", "--release", "bare")
    assert code == 0, err
    folder = home / "reports" / "bare"
    assert not list(folder.glob("*.png"))
    page = (folder / "index.html").read_text()
    for note in ("no data: fct_layer_evolution not in the catalog (run saew build)",
                 "no data: fct_cluster_transitions not in the catalog (run saew build)",
                 "no data: run saew cluster", "no data: run saew match", "no data: run saew evaluate",
                 "no data: run saew train"):
        assert note in page, note
    assert "SAEs of the release" in page and "could not draw" not in page


def test_report_with_empty_marts_after_a_build(built: Path, tmp_path: Path):
    """Marts exist but hold nothing for this release: notes name the steps, nothing crashes."""
    home = _copy(built, tmp_path)
    put_sae(Lake(home), "other", 0, make_sae(8, 16, seed=5))
    put_sae(Lake(home), "other", 1, make_sae(8, 16, seed=6))
    code, out, err = run_saew(home, "report", "--release", "other")
    assert code == 0, err
    page = (home / "reports" / "other" / "index.html").read_text()
    assert "no data: run saew cluster, then saew match and/or saew transport, then saew build" in page
    assert "no data: run saew harvest and saew coactivation, then saew build" in page
    assert "could not draw" not in page and "warning" not in err
    assert (home / "reports" / "r" / "index.html").is_file()        # other releases untouched


# ---------------------------------------------------------------------------- pieces
def test_sankey_layout_stacks_bands_inside_their_nodes():
    src = np.array([0, 0, 1, 1, 2])
    dst = np.array([5, 6, 5, 7, 7])
    flow = np.array([3.0, 1.0, 2.0, 2.0, 4.0])
    lay = plots.sankey_layout(src, dst, flow, gap=0.05)
    scale = (1 - 0.05 * 2) / flow.sum()
    # node heights are total flows; sources ordered by outflow (2: 4, 0: 4, 1: 4 -> ties by id)
    np.testing.assert_allclose(lay.src_h, np.array([4.0, 4.0, 4.0]) * scale)
    np.testing.assert_allclose(lay.dst_h, np.array([5.0, 1.0, 6.0]) * scale)
    np.testing.assert_allclose(lay.band_h, flow * scale)
    for nodes, y0, h, band_y0, ends in ((lay.src_nodes, lay.src_y0, lay.src_h, lay.band_src_y0, src),
                                        (lay.dst_nodes, lay.dst_y0, lay.dst_h, lay.band_dst_y0, dst)):
        assert y0.min() >= -1e-12 and (y0 + h).max() <= 1 + 1e-12
        order = np.argsort(y0)
        assert np.all(y0[order][1:] >= (y0 + h)[order][:-1] + 0.05 - 1e-12)     # gaps between nodes
        for k, n in enumerate(nodes):
            m = ends == n
            lo, hi = band_y0[m], band_y0[m] + lay.band_h[m]
            assert lo.min() >= y0[k] - 1e-12 and hi.max() <= y0[k] + h[k] + 1e-12
            np.testing.assert_allclose(np.sort(hi - lo).sum(), h[k])           # bands tile the node
            o = np.argsort(lo)
            assert np.all(lo[o][1:] >= hi[o][:-1] - 1e-12)                      # and do not overlap


def test_sankey_flows_lumps_small_clusters_and_keeps_totals(built: Path):
    """dbt lumps the small clusters (the exact rows: unit test sankey_lumps_small_clusters_and_keeps_totals
    in models/report/_report__unit_tests.yml); the report's reader keeps every pair's total and maps
    the lumped node to plots.OTHER."""
    con = duckdb.connect(str(built / "saew.duckdb"), read_only=True)
    try:
        totals = dict(con.sql("SELECT src_layer, sum(flow) FROM fct_cluster_transitions WHERE release = 'r' "
                              "AND cluster_space = 'decoder' AND link = 'match/decoder/folded' GROUP BY 1").fetchall())
        r = read.Reader(con)
        c = flows.sankey_flows(r, "r", "decoder", "match/decoder/folded", [0, 1, 2])
        assert _n_rows(flows.sankey_flows(r, "r", "decoder", "match/decoder/folded", [7])) == 0
    finally:
        con.close()
    assert set(c["src_layer"].tolist()) == set(totals) == {0, 1, 2}
    for layer, total in totals.items():
        m = c["src_layer"] == layer
        assert c["flow"][m].sum() == pytest.approx(total)
    assert c["src"].dtype.kind == "i" and c["dst"].dtype.kind == "i"


def _n_rows(c) -> int:
    return len(c["flow"])


def test_parse_pairs_defaults_to_evenly_spaced_pairs():
    layers = list(range(30))
    pairs = read.parse_pairs(None, layers, "r")
    assert pairs == [(0, 1), (9, 10), (19, 20), (28, 29)]
    assert read.parse_pairs(None, [3, 5, 9], "r") == [(3, 5), (5, 9)]
    assert read.parse_pairs(" 5-9 , 3-5,5-9", [3, 5, 9], "r") == [(5, 9), (3, 5)]
    assert read.parse_pairs(None, [3], "r") == []


def test_html_escapes_table_cells_and_titles():
    t = Table("Matching", "a <b>", "c & d", ["x<y"], [(NASTY, 1.23456, None, True)])
    out = report_html.table_html(t)
    assert "<script>" not in out and "&lt;script&gt;" in out and "x&lt;y" in out and "a &lt;b&gt;" in out
    assert '<td class="num">1.235</td>' in out and "<td></td>" in out
