"""queries/*.sql: every ready query runs through `saew query` on the small built warehouse."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import run_saew
from tests.factories_dbt import built_small_warehouse, mart

QUERIES = sorted((Path(__file__).resolve().parents[1] / "queries").glob("*.sql"))


@pytest.fixture(scope="module")
def built():
    return built_small_warehouse()


def run_json(home: Path, sql_or_file) -> list[dict]:
    code, out, err = run_saew(home, "query", str(sql_or_file), "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_the_expected_queries_exist():
    names = {q.stem for q in QUERIES}
    assert {"feature_lineage", "feature_lineage_recursive", "most_persistent_features", "clusters_that_split",
            "survival_vs_null", "top_coactivating_clusters", "pass_through_features"} <= names


@pytest.mark.parametrize("path", QUERIES, ids=[q.stem for q in QUERIES])
def test_every_query_runs_and_returns_rows(built, path: Path):
    home, _ = built
    text = path.read_text()
    assert text.startswith("--"), f"{path.name}: needs a header comment"
    assert "saew query queries/" in text
    rows = run_json(home, path)
    assert rows, f"{path.name} returned no rows on the small warehouse"
    code, out, err = run_saew(home, "query", str(path))  # the table format too
    assert code == 0 and out.strip(), err


def test_recursive_lineage_equals_the_mart(built, tmp_path: Path):
    home, w = built
    base = (QUERIES[0].parent / "feature_lineage_recursive.sql").read_text()
    for layer, feature in [(0, 0), (0, 2), (0, 3), (1, 5), (2, 1)]:
        sql = base.replace("cast(null as integer) as root_layer", f"{layer} as root_layer") \
                  .replace("cast(null as integer) as root_feature", f"{feature} as root_feature")
        f = tmp_path / f"q_{layer}_{feature}.sql"
        f.write_text(sql)
        got = run_json(home, f)
        want = mart(home, "select link, depth, layer, feature, step_cost, cum_cost, step_cosine, description "
                          "from fct_feature_lineage where link = 'match/decoder/folded' and root_layer = ? "
                          "and root_feature = ? order by depth", [layer, feature])
        assert len(got) == len(want) >= 1
        for g, r in zip(got, want):
            assert g["link"] == r["link"] and (g["depth"], g["layer"], g["feature"]) == (r["depth"], r["layer"], r["feature"])
            for c in ("step_cost", "cum_cost", "step_cosine"):
                assert (g[c] is None and r[c] is None) or abs(g[c] - r[c]) < 1e-12
            assert g["description"] == r["description"]


def test_query_results_match_the_marts(built):
    home, w = built
    passing = run_json(home, QUERIES[0].parent / "pass_through_features.sql")
    assert [(r["layer"], r["feature"]) for r in passing] == [(0, 0), (0, 1), (0, 4)]
    assert passing[0]["dst_feature"] == 0 and passing[0]["pearson"] == 0.97
    null = run_json(home, QUERIES[0].parent / "survival_vs_null.sql")
    assert len(null) == mart(home, "select count(*) as n from fct_layer_evolution_vs_null")[0]["n"]
    split = run_json(home, QUERIES[0].parent / "clusters_that_split.sql")
    assert all(r["share_of_src"] >= 0.2 and r["link"].startswith("match/") for r in split)
    top = run_json(home, QUERIES[0].parent / "top_coactivating_clusters.sql")
    assert {(r["space"], r["cluster"]) for r in top} == {("decoder", 0), ("text", 1)}
    lineage = run_json(home, QUERIES[0].parent / "feature_lineage.sql")
    assert [r["depth"] for r in lineage] == [0, 1, 2] and lineage[0]["description"] == "layer 0 feature 0"


def test_bad_query_input_exit_2(built, tmp_path: Path):
    home, _ = built
    code, out, err = run_saew(home, "query", str(tmp_path / "missing.sql"))
    assert code == 2 and err.strip().startswith("saew: error:") and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.sql"
    bad.write_text("-- broken\nselect * from no_such_table")
    code, out, err = run_saew(home, "query", str(bad))
    assert code == 2 and err.strip().startswith("saew: error:") and len(err.strip().splitlines()) == 1
