"""`saew export --out DIR`: the marts as Parquet, read back with polars."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.factories import run_saew
from tests.factories_dbt import built_small_warehouse, mart

MARTS = {"dim_features", "fct_cluster_coactivation", "fct_cluster_fates", "fct_cluster_transitions",
         "fct_coactivation_pairs", "fct_feature_fates_activation", "fct_feature_flow", "fct_feature_lineage",
         "fct_feature_persistence", "fct_layer_evolution", "fct_layer_evolution_vs_null",
         "fct_layer_evolution_null", "dim_links",
         # feature flow and causal checks (issue 19)
         "dim_flow_origins", "fct_feature_origin", "fct_origin_by_layer", "fct_link_interventions",
         "fct_link_causal", "fct_origin_causal"}


@pytest.fixture(scope="module")
def built():
    return built_small_warehouse()


def test_export_marts_read_back_with_polars(built, tmp_path: Path):
    home, w = built
    out = tmp_path / "export"
    code, stdout, err = run_saew(home, "export", "--out", str(out))
    assert code == 0, err
    assert {p.stem for p in out.glob("*.parquet")} == MARTS
    for name in MARTS:
        df = pl.read_parquet(out / f"{name}.parquet")
        cols = [r["column_name"] for r in mart(home, "select column_name from information_schema.columns "
                                                     "where table_name = ? order by ordinal_position", [name])]
        assert df.columns == cols, name
        assert df.height == mart(home, f"select count(*) as n from {name}")[0]["n"], name
    evo = pl.read_parquet(out / "fct_layer_evolution.parquet")
    got = evo.filter((pl.col("link") == "match/decoder/folded") & (pl.col("cluster_space") == "decoder")
                     & (pl.col("src_layer") == 0))["survive_rate"].to_list()
    assert got == [1.0]
    lineage = pl.read_parquet(out / "fct_feature_lineage.parquet")
    assert lineage.schema["step_cosine"] == pl.Float64 and lineage.schema["depth"] in (pl.Int32, pl.Int64)
    # exporting again replaces the files, leaves no temporaries
    code, _, err = run_saew(home, "export", "--out", str(out))
    assert code == 0, err
    assert not list(out.glob(".*")) and len(list(out.iterdir())) == len(MARTS)
    assert pl.read_parquet(out / "fct_feature_lineage.parquet").height == lineage.height


def test_export_all_includes_intermediate_models(built, tmp_path: Path):
    home, _ = built
    code, _, err = run_saew(home, "export", "--out", str(tmp_path / "all"), "--all")
    assert code == 0, err
    names = {p.stem for p in (tmp_path / "all").glob("*.parquet")}
    assert MARTS <= names and "int_cluster_flows" in names and "stg_lake__matches" in names


def test_export_bad_input_exit_2(home, tmp_path: Path):
    out = tmp_path / "out"
    code, _, err = run_saew(home, "export", "--out", str(out))  # nothing built yet
    assert code == 2 and err.strip().startswith("saew: error:") and "saew build" in err
    assert not out.exists()
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_saew(home, "export", "--out", str(f))
    assert code == 2 and "not a directory" in err and f.read_text() == "x"
