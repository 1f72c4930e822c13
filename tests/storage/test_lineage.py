"""``storage.lineage``: replacing a release's activations drops the rows computed from the old ones
(and only those), whichever command replaces them; ``saew build`` then passes."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from saew.compute.activations.harvest import HarvestConfig, harvest
from saew.compute.lm.load import load_model_from_tl
from saew.storage.context import Context
from saew.storage.lineage import FROM_ACTIVATIONS
from saew.storage.schemas import spec
from tests.factories import make_sae, put_sae
from tests.factories_coact import put_activations, sparse_matrix
from tests.factories_harvest import tiny_tl_model, write_txt

LAYERS = (0, 1, 2, 3)


def _count(lake, table: str, where: str = "TRUE") -> int:
    if not lake.has_data(table):
        return 0
    return lake.query(f"SELECT count(*) AS n FROM {table} WHERE {where}").column("n")[0].as_py()


def test_every_entry_names_columns_of_its_table():
    for d in FROM_ACTIVATIONS:
        names = spec(d.table).schema.names
        assert d.release in names and set(d.layers) <= set(names), d
    # partition-aligned entries are removed without reading their rows
    assert {d.table for d in FROM_ACTIVATIONS if d.by_partition()} == \
        {"coactivations", "graph_nodes", "graph_degrees", "communities"}


@pytest.mark.parametrize("engine", ["parquet", "ducklake"])
def test_reingesting_one_layer_drops_what_came_from_it_and_build_passes(saew, home, tmp_path, engine):
    from saew.storage.lake import Lake

    if engine == "ducklake":
        code, out, err = saew("init", "--lake", "ducklake")
        assert code == 0, out + err
    lake = Lake(home)
    for r, seed in (("a", 0), ("b", 10)):
        for L in LAYERS:
            put_activations(lake, r, L, sparse_matrix(300, 12, 0.3, seed + L))
        for cmd in (("coactivation",), ("correlate",)):
            code, _, err = saew(*cmd, "--release", r)
            assert code == 0, err
    code, _, err = saew("communities", "--release", "a", "--other-release", "b")
    assert code == 0, err
    before = {t: _count(lake, t) for t in ("coactivations", "correlations", "communities", "graph_nodes",
                                           "graph_degrees", "graph_divergence")}
    assert all(before.values()), before
    b_rows = {t: _count(lake, t, "release = 'b'") for t in ("coactivations", "correlations")}

    # layer 1 of release a: new activations over fewer tokens (the old n_ab exceed the new N)
    path = tmp_path / "acts.npz"
    sp.save_npz(path, sp.csr_matrix(sparse_matrix(100, 12, 0.3, 99)))
    code, out, err = saew("ingest", "activations", path, "--release", "a", "--layer", 1)
    assert code == 0, err
    assert "new activations; dropped" in out and "saew coactivation" in out

    assert _count(lake, "coactivations", "release = 'a' AND layer = 1") == 0
    assert _count(lake, "coactivations", "release = 'a' AND layer <> 1") > 0
    assert _count(lake, "correlations", "release = 'a' AND (src_layer = 1 OR dst_layer = 1)") == 0
    assert _count(lake, "correlations", "release = 'a' AND src_layer = 2") > 0
    assert _count(lake, "communities", "release = 'a'") == 0
    assert _count(lake, "graph_nodes", "release = 'a' AND layer = 1") == 0
    assert _count(lake, "graph_nodes", "release = 'a' AND layer = 2") > 0
    assert _count(lake, "graph_divergence", "layer = 1") == 0
    assert _count(lake, "graph_divergence", "layer = 2") > 0
    # the other release is untouched
    assert {t: _count(lake, t, "release = 'b'") for t in b_rows} == b_rows

    if engine == "parquet":   # (dbt on a DuckLake home: tests/storage/test_ducklake_parity.py)
        code, out, err = saew("build")
        assert code == 0, out + err
    # the recomputed layer is back, over the new N
    code, _, err = saew("coactivation", "--release", "a", "--layer", 1)
    assert code == 0, err
    assert lake.query("SELECT max(n_ab) AS m FROM coactivations WHERE release = 'a' AND layer = 1"
                      ).column("m")[0].as_py() <= 100


def test_reharvest_drops_the_coactivations_of_the_old_harvest(saew, lake, tmp_path):
    m = load_model_from_tl(tiny_tl_model(n_layers=2, d_model=32), "tiny")
    for L in (0, 1):
        put_sae(lake, "tl", L, make_sae(32, 24, "relu", seed=5 + L))
    corpus = write_txt(tmp_path / "c.txt")

    def run(tokens: int) -> str:
        with lake.transaction():
            return harvest(Context(lake, f"run-{tokens}"), HarvestConfig("tl", "tiny", str(corpus), tokens, 4, 16), model=m)

    run(40)
    code, _, err = saew("coactivation", "--release", "tl")
    assert code == 0, err
    assert _count(lake, "coactivations") > 0
    lake.notes.clear()
    run(30)
    assert _count(lake, "coactivations") == 0
    assert any("dropped" in n and "coactivations" in n for n in lake.notes), lake.notes
    # a harvest over nothing computed from it says nothing
    lake.notes.clear()
    run(30)
    assert not lake.notes
    assert np.array_equal(lake.query("SELECT DISTINCT n_tokens FROM activation_sets").column(0).to_numpy(), [30])


@pytest.mark.parametrize("layers,where", [([1], "release = $1 AND (src_layer IN (1) OR dst_layer IN (1))"),
                                          ([0, 2], "release = $1 AND (src_layer IN (0, 2) OR dst_layer IN (0, 2))")])
def test_where_names_any_layer_column(layers, where):
    d = next(d for d in FROM_ACTIVATIONS if d.table == "correlations")
    assert d.where(layers) == where


def test_no_layers_drop_nothing(lake):
    from saew.storage.lineage import drop_from_activations

    put_activations(lake, "a", 0, sparse_matrix(50, 6, 0.3, 1))
    assert drop_from_activations(lake, "a", []) == [] and not lake.notes
