"""The catalog never blocks a writer and never fails a committed command; a re-ingest with
other weights drops the old SAE's derived rows in the same commit, identical weights change
nothing."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from tests.factories import make_sae, put_sae
from tests.formats import write_saelens
from saew.storage import catalog
from saew.storage.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
PY = ROOT / ".venv" / "bin" / "python"


def _holder(path: Path) -> subprocess.Popen:
    """Another process (a notebook, a BI tool) holding the catalog file open read-only."""
    code = (f"import duckdb, sys, time\ncon = duckdb.connect({str(path)!r}, read_only=True)\n"
            f"print(con.execute('SELECT count(*) FROM saes').fetchone()[0], flush=True)\n"
            f"sys.stdin.readline()\n"
            f"print(con.execute('SELECT count(*) FROM saes').fetchone()[0], flush=True)\n")
    return subprocess.Popen([str(PY), "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)


def test_a_reader_holding_the_catalog_never_fails_a_writer(saew, home, tmp_path):
    f0 = write_saelens(tmp_path / "a", make_sae(8, 16, seed=0), hook="blocks.0.hook_resid_post")
    assert saew("ingest", "sae", f0, "--release", "r")[0] == 0
    holder = _holder(home / "saew.duckdb")
    try:
        assert holder.stdout.readline().strip() == "1"
        f1 = write_saelens(tmp_path / "b", make_sae(8, 16, seed=1), hook="blocks.1.hook_resid_post")
        code, out, err = saew("ingest", "sae", f1, "--release", "r")
        assert code == 0 and "warning" not in err, err
        # a new reader of the catalog sees the commit; the holder keeps its old, whole views
        con = catalog.connect(Lake(home))
        try:
            assert con.execute("SELECT count(*) FROM saes").fetchone()[0] == 2
        finally:
            con.close()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "1"
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_catalog_is_rebuilt_on_the_next_open(home):
    lake = Lake(home)
    put_sae(lake, "r", 0, make_sae(8, 16))
    with lake.transaction():   # a commit whose catalog refresh never ran (killed, full disk)
        from saew.storage.saes import write_sae
        write_sae(lake, "r", 1, make_sae(8, 16, seed=3), source_format="t", source_path="p",
                  source_sha256="", run_id="x")
    con = catalog.connect(lake)
    try:
        assert con.execute("SELECT count(*) FROM saes").fetchone()[0] == 2
        assert catalog.built_for(con) == (str(home), lake.manifest().version)
    finally:
        con.close()


def _matches(lake: Lake, src: int, dst: int, n: int) -> None:
    lake.write("matches", {"src_feature": np.arange(n, dtype=np.int32), "dst_layer": np.full(n, dst, np.int32),
                           "dst_feature": np.arange(n, dtype=np.int32), "cost": np.zeros(n), "cosine": np.ones(n)},
               release="r", space="decoder", method="folded", src_layer=src)


def test_reingest_drops_what_the_old_sae_derived_and_identical_weights_change_nothing(saew, home, tmp_path):
    lake = Lake(home)
    for layer in range(3):
        put_sae(lake, "r", layer, make_sae(8, 16, seed=layer))
    _matches(lake, 0, 1, 16)
    _matches(lake, 1, 2, 16)
    for layer in range(3):
        lake.write("clusters", {"feature": np.arange(16, dtype=np.int32), "cluster": np.zeros(16, np.int32),
                                "probability": np.ones(16, np.float32), "x": np.zeros(16, np.float32),
                                "y": np.zeros(16, np.float32)}, release="r", layer=layer, space="decoder")
        lake.write("descriptions", {"feature": np.arange(16, dtype=np.int32), "description": ["d"] * 16,
                                    "explainer": ["e"] * 16, "source": ["s"] * 16}, release="r", layer=layer)
    new = write_saelens(tmp_path / "n", make_sae(8, 8, seed=9), hook="blocks.1.hook_resid_post")
    code, out, err = saew("ingest", "sae", new, "--release", "r", "--layer", "1")
    assert code == 0, err
    assert out.count("dropped") == 1 and "32 matches" in out and "16 clusters" in out and "8 descriptions" in out
    q = lake.query
    assert q("SELECT count(*) FROM matches").column(0)[0].as_py() == 0        # 0->1 and 1->2 touch layer 1
    assert q("SELECT layer, count(*) n FROM clusters GROUP BY 1 ORDER BY 1").to_pylist() == [
        {"layer": 0, "n": 16}, {"layer": 2, "n": 16}]
    assert q("SELECT max(feature) m, count(*) n FROM descriptions WHERE layer = 1").to_pylist() == [{"m": 7, "n": 8}]
    assert q("SELECT count(*) FROM features WHERE layer = 1").column(0)[0].as_py() == 8
    # the same file again: nothing changes, not even the saes row
    before = dict(lake.manifest().files)
    code, out, err = saew("ingest", "sae", new, "--release", "r", "--layer", "1")
    assert code == 0 and "dropped" not in out, err
    after = {k: v for k, v in lake.manifest().files.items() if not k.startswith("runs/")}
    assert after == {k: v for k, v in before.items() if not k.startswith("runs/")}


def test_build_works_on_a_copy_swapped_in_only_when_it_passes(home):
    """``saew build``'s catalog: readers keep the old marts during the build, a failed build
    changes nothing, a passing one replaces the catalog with views and marts."""
    import duckdb
    import pytest

    lake = Lake(home)
    put_sae(lake, "r", 0, make_sae(8, 16))

    def marts() -> list:
        con = catalog.connect(lake)
        try:
            return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                              "WHERE table_name LIKE 'fct_%' ORDER BY 1").fetchall()]
        finally:
            con.close()

    with catalog.building(lake) as path:
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE fct_a AS SELECT count(*) n FROM saes")
        con.close()
        assert marts() == []                       # a reader during the build: the old catalog
    assert marts() == ["fct_a"]
    with pytest.raises(RuntimeError):
        with catalog.building(lake) as path:
            con = duckdb.connect(str(path))
            con.execute("DROP TABLE fct_a")
            con.close()
            raise RuntimeError("dbt failed")
    assert marts() == ["fct_a"]
    put_sae(lake, "r", 1, make_sae(8, 16, seed=1))   # later commits keep the marts
    con = catalog.connect(lake)
    try:
        assert con.execute("SELECT count(*) FROM saes").fetchall()[0][0] == 2
        assert con.execute("SELECT n FROM fct_a").fetchall()[0][0] == 1
    finally:
        con.close()
