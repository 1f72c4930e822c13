"""The DuckLake engine (SQLite catalog) against the Parquet lake: the same inputs give the same
lake tables, marts, ``saew query`` and ``saew export``; one unit is one snapshot (a kill inside
the DuckLake transaction leaves the previous snapshot; a reader never sees half a unit);
``saew init`` / ``snapshots`` / ``query --at``."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from saew.storage.lake import Lake
from saew.storage.schemas import TABLES
from tests.factories import make_sae, put_sae, run_saew
from tests.factories_dbt import built_small_warehouse, write_small_warehouse

ROOT = Path(__file__).resolve().parents[2]
# columns that name the run or the clock (or the home), not the data
VOLATILE = {"run_id", "ingested_at", "started_at", "finished_at", "params", "source_path"}


def _norm(v):
    """Floats to 12 significant digits (a sum's last bits depend on the row order of the files)."""
    if isinstance(v, float):
        return float(f"{v:.12g}")
    if isinstance(v, (list, tuple)):
        return type(v)(_norm(x) for x in v)
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def _sorted(rows) -> list:
    return sorted((_norm(r) for r in rows), key=repr)


def _ducklake_home(path: Path) -> Path:
    code, out, err = run_saew(path, "init", "--lake", "ducklake")
    assert code == 0, out + err
    return path


def _rows(lake: Lake, table: str) -> list[tuple]:
    cols = [f.name for f in TABLES[table].schema if f.name not in VOLATILE]
    q = ", ".join(f'"{c}"' for c in cols)
    return _sorted(lake.query(f'SELECT {q} FROM "{table}"').to_pylist()) if cols else []


def _marts(home: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND "
            "table_type = 'BASE TABLE' AND (table_name LIKE 'fct_%' OR table_name LIKE 'dim_%') ORDER BY 1").fetchall()]
        out = {}
        for n in names:
            cols = [c for c, in con.execute(f"SELECT column_name FROM information_schema.columns WHERE "
                                            f"table_schema = 'main' AND table_name = ?", [n]).fetchall()
                    if c not in VOLATILE]
            out[n] = _sorted(con.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} '
                                         f'FROM main."{n}"').fetchall())
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def built_pair(tmp_path_factory) -> tuple[Path, Path]:
    """(parquet home, ducklake home) holding the small warehouse, both after ``saew build``."""
    pq_home, _ = built_small_warehouse()
    dl_home = _ducklake_home(tmp_path_factory.mktemp("dl") / "home")
    write_small_warehouse(Lake(dl_home))
    code, out, err = run_saew(dl_home, "build", "--quiet")
    assert code == 0, out + err
    return pq_home, dl_home


def test_every_table_and_mart_is_the_same_on_both_engines(built_pair):
    pq_home, dl_home = built_pair
    a, b = Lake(pq_home), Lake(dl_home)
    assert b.engine is not None and a.engine is None
    for t in TABLES:
        assert _rows(a, t) == _rows(b, t), t
    ma, mb = _marts(pq_home), _marts(dl_home)
    assert ma.keys() == mb.keys() and len(ma) > 5
    for n in ma:
        assert ma[n] == mb[n], n
    # the catalog of a DuckLake home is self-contained: plain read_parquet views, no extension
    con = duckdb.connect(str(dl_home / "saew.duckdb"), read_only=True,
                         config={"autoload_known_extensions": False, "autoinstall_known_extensions": False})
    try:
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == \
            Lake(pq_home).query("SELECT count(*) AS n FROM features").column("n")[0].as_py()
    finally:
        con.close()


def test_query_and_export_are_the_same_on_both_engines(built_pair, tmp_path):
    pq_home, dl_home = built_pair
    import json

    for sql in ("SELECT release, layer, count(*) AS n FROM features GROUP BY ALL ORDER BY ALL",
                "SELECT * FROM fct_layer_evolution"):
        ra, rb = run_saew(pq_home, "query", sql, "--format", "json"), run_saew(dl_home, "query", sql, "--format", "json")
        assert ra[0] == rb[0] == 0, (ra, rb)
        assert _sorted(json.loads(ra[1])) == _sorted(json.loads(rb[1]))
    outs = []
    for h, name in ((pq_home, "a"), (dl_home, "b")):
        code, out, err = run_saew(h, "export", "--out", tmp_path / name)
        assert code == 0, out + err
        outs.append(tmp_path / name)
    files = sorted(p.name for p in outs[0].glob("*.parquet"))
    assert files == sorted(p.name for p in outs[1].glob("*.parquet")) and files
    for f in files:
        ta, tb = pq.read_table(outs[0] / f), pq.read_table(outs[1] / f)
        keep = [c for c in ta.column_names if c not in VOLATILE]
        assert _sorted(ta.select(keep).to_pylist()) == _sorted(tb.select(keep).to_pylist()), f


def _rewrites(lake: Lake) -> None:
    """Replacing, deleting rows from, and dropping partitions: the same calls on either engine."""
    for layer in (0, 1, 2):
        put_sae(lake, "r", layer, make_sae(d_in=4, d_sae=6, seed=layer))
    put_sae(lake, "r", 1, make_sae(d_in=4, d_sae=5, seed=9))          # a re-ingest replaces the layer
    with lake.transaction():
        assert lake.delete_rows("features", "feature >= ? AND layer <> 2", [3]) == 3 + 2
        lake.write("training_log", {"step": np.arange(3, dtype=np.int32), "tokens_seen": np.arange(3),
                                    "mse": np.ones(3), "fvu": np.ones(3), "l0": np.ones(3),
                                    "dead_frac": np.zeros(3)}, release="r", layer=0)
        assert lake.delete_rows("training_log", "step = 1") == 0     # rows this unit wrote stay
    with lake.transaction():
        lake.delete_partition("features", release="r", layer=2)
        assert lake.delete_rows("features", "feature = 0") == 2


def test_rewrites_deletes_and_partition_drops_match_and_leave_no_delete_files(tmp_path):
    a, b = Lake(tmp_path / "pq"), Lake(_ducklake_home(tmp_path / "dl"))
    _rewrites(a)
    _rewrites(b)
    for t in TABLES:
        assert _rows(a, t) == _rows(b, t), t
    snap = b.manifest()
    assert not [t for t in TABLES if snap.delete_files(t)]            # every DELETE dropped whole files
    assert b.query("SELECT count(*) AS n FROM features").column("n")[0].as_py() == 2 + 2


def test_a_delete_file_from_another_tool_is_subtracted_in_the_views(tmp_path):
    lake = Lake(_ducklake_home(tmp_path / "dl"))
    put_sae(lake, "r", 0, make_sae(d_in=4, d_sae=6, seed=0))
    cur = lake.engine.cursor()
    cur.execute("DELETE FROM lake.features WHERE feature = 2")         # a partial DELETE: a delete file
    cur.close()
    snap = lake.manifest()
    assert snap.delete_files("features")
    assert sorted(lake.query("SELECT feature FROM features").column("feature").to_pylist()) == [0, 1, 3, 4, 5]


def test_snapshots_query_at_and_init_refusals(tmp_path):
    home = _ducklake_home(tmp_path / "dl")
    lake = Lake(home)
    put_sae(lake, "r", 0, make_sae(d_in=4, d_sae=6, seed=0))
    first = lake.manifest().version
    put_sae(lake, "r", 0, make_sae(d_in=4, d_sae=3, seed=1))
    code, out, err = run_saew(home, "snapshots", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "snapshot_id,snapshot_time,command,run_id", err
    assert len(out.splitlines()) >= 4
    assert run_saew(home, "query", "--at", str(first), "SELECT count(*) FROM features")[1].split()[-1] == "6"
    assert run_saew(home, "query", "SELECT count(*) FROM features")[1].split()[-1] == "3"
    code, _, err = run_saew(home, "query", "--at", "99999", "SELECT 1")
    assert code == 2 and "no such snapshot" in err and len(err.splitlines()) == 1
    assert run_saew(home, "init", "--lake", "ducklake")[0] == 0                 # same settings: fine
    code, _, err = run_saew(home, "init", "--lake", "parquet")
    assert code == 2 and "already holds a ducklake lake" in err and len(err.splitlines()) == 1
    pq_home = tmp_path / "pq"
    put_sae(Lake(pq_home), "r", 0, make_sae(d_in=4, d_sae=6, seed=0))
    for argv in (("snapshots",), ("query", "--at", "1", "SELECT 1"), ("init", "--lake", "ducklake")):
        code, out, err = run_saew(pq_home, *argv)
        assert code == 2 and len(err.splitlines()) == 1 and not out, (argv, err)
    code, _, err = run_saew(tmp_path / "x", "init", "--lake", "ducklake", "--catalog", "mysql:db")
    assert code == 2 and "--catalog" in err


_WRITER = """
import sys, time, numpy as np
from saew.storage.lake import Lake
lake = Lake(sys.argv[1])
for i in range(int(sys.argv[2])):
    with lake.transaction():
        for layer in (0, 1, 2):
            lake.write("training_log", {"step": np.arange(4, dtype=np.int32), "tokens_seen": np.arange(4),
                       "mse": np.full(4, float(i)), "fvu": np.ones(4), "l0": np.ones(4),
                       "dead_frac": np.zeros(4)}, release="r", layer=layer)
    print(i, flush=True)
    time.sleep(float(sys.argv[3]))   # a reader gets in between rewrites even on a loaded machine
"""


def _writer(home: Path, n: int, pause: float = 0.0, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(home), str(n), str(pause)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_a_kill_inside_the_ducklake_commit_leaves_the_previous_snapshot(tmp_path):
    home = _ducklake_home(tmp_path / "dl")
    p = _writer(home, 1)
    assert p.wait(120) == 0, p.stderr.read()
    lake = Lake(home)
    before, rows = lake.manifest().version, _rows(lake, "training_log")
    p = _writer(home, 1, SAEW_CHAOS_KILL_AT="ducklake")
    assert p.wait(120) == -9
    lake = Lake(home)
    assert lake.manifest().version == before and _rows(lake, "training_log") == rows
    p = _writer(home, 2)                                                  # the catalog is not left locked
    assert p.wait(120) == 0, p.stderr.read()
    assert Lake(home).query("SELECT DISTINCT mse FROM training_log").column("mse").to_pylist() == [1.0]


def test_a_reader_during_multi_layer_rewrites_sees_whole_units(tmp_path):
    from saew.storage import catalog

    home = _ducklake_home(tmp_path / "dl")
    p = _writer(home, 1)
    assert p.wait(120) == 0
    p = _writer(home, 6, pause=0.5)
    seen, reads, deadline = set(), 0, time.time() + 90
    try:
        while p.poll() is None and time.time() < deadline:
            lake = Lake(home)
            t = lake.query("SELECT layer, count(*) AS n, min(mse) AS lo, max(mse) AS hi FROM training_log "
                           "GROUP BY layer ORDER BY layer").to_pylist()
            assert [r["n"] for r in t] == [4, 4, 4]
            assert len({r["lo"] for r in t} | {r["hi"] for r in t}) == 1, t   # one unit: one value
            seen.add(t[0]["lo"])
            con = catalog.connect(lake)
            try:
                vals = con.execute("SELECT DISTINCT mse FROM training_log").fetchall()
            finally:
                con.close()
            assert len(vals) == 1
            reads += 1
    finally:
        p.wait(120)
    assert p.returncode == 0, p.stderr.read()
    assert reads >= 2 and len(seen) >= 2


def test_a_staged_folder_commits_with_its_unit(tmp_path):
    """SAELens folders (``stage_dir``) keep the file-based version store on DuckLake homes."""
    home = _ducklake_home(tmp_path / "dl")
    lake = Lake(home)
    for n in (1, 2):
        with lake.transaction():
            d = lake.stage_dir("saes/r/blocks.0.hook_resid_post")
            (d / "cfg.json").write_text(str(n))
            put_sae(lake, "r", 0, make_sae(d_in=4, d_sae=3 + n, seed=n))
        assert (home / "saes/r/blocks.0.hook_resid_post/cfg.json").read_text() == str(n)
        assert Lake(home).query("SELECT d_sae FROM saes").column("d_sae").to_pylist() == [3 + n]
