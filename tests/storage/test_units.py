"""Units of work (contract section 2): each unit all or none for readers, finished units in
``runs``, the raw table folders equal to the table, recovery by any reader, garbage kept for
old readers and then collected, and pre-manifest homes opened as they are."""
from __future__ import annotations

import json
import os

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import make_sae, put_sae
from saew.storage import versions
from saew.storage.lake import Lake, RunInfo, resume_key
from saew.storage.saes import load_sae, stage_saelens_folder


def _n(lake: Lake, sql: str, params=None) -> int:
    return lake.query(sql, params).column(0)[0].as_py()


def _raw(lake: Lake, table: str) -> int:
    """Rows of a raw ``read_parquet`` over the table folder (what a BI tool reads)."""
    glob = (lake.table_dir(table) / "**" / "*.parquet").as_posix()
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0]


def _run(command: str = "match", params: dict | None = None) -> RunInfo:
    from datetime import datetime

    return RunInfo(command, json.dumps(params or {"release": "r", "home": "/x"}, sort_keys=True),
                   "test", datetime(2026, 1, 1))


def _tl(lake: Lake, layer: int, n: int) -> None:
    lake.write("training_log", {"step": np.arange(n, dtype=np.int32), "tokens_seen": np.arange(n),
                                "mse": np.zeros(n), "fvu": np.zeros(n), "l0": np.zeros(n),
                                "dead_frac": np.zeros(n)}, release="r", layer=layer)


def test_a_unit_is_all_or_none_and_an_open_reader_keeps_its_snapshot(lake: Lake):
    _tl(lake, 0, 5)
    before = lake.connect()   # a reader that opened before the command
    with lake.transaction():
        _tl(lake, 0, 7)
        _tl(lake, 1, 7)
        # staged only: no reader sees any of the unit yet
        assert _n(lake, "SELECT count(*) FROM training_log") == 5
        lake.commit_unit("layer=0-1")
        assert _n(lake, "SELECT count(*) FROM training_log") == 14   # both partitions at once
        _tl(lake, 2, 7)
    assert _n(lake, "SELECT count(*) FROM training_log") == 21
    # the earlier reader still reads the files of its manifest, whole
    assert before.execute("SELECT count(*) FROM training_log").fetchone()[0] == 5
    before.close()
    assert _raw(lake, "training_log") == 21


def test_failure_after_a_unit_keeps_the_unit_and_records_it(lake: Lake):
    run = _run()
    with pytest.raises(RuntimeError):
        with lake.transaction("run1", run=run):
            _tl(lake, 0, 3)
            lake.commit_unit("layer=0")
            _tl(lake, 1, 3)
            raise RuntimeError("killed at layer 1")
    assert _n(lake, "SELECT count(*) FROM training_log") == 3
    r = lake.query("SELECT status, units FROM runs").to_pylist()
    assert r == [{"status": "partial", "units": ["layer=0"]}]
    key = resume_key(run.params)
    assert lake.finished_units("match", key) == {"layer=0"}
    assert lake.finished_units("cluster", key) == set()
    assert lake.finished_units("match", resume_key(json.dumps({"release": "other"}))) == set()
    # the resumed run finishes; then nothing is left to resume
    with lake.transaction("run2", run=run):
        assert lake.finished_units("match", key) == {"layer=0"}
        _tl(lake, 1, 3)
        lake.commit_unit("layer=1")
    assert lake.finished_units("match", key) == set()
    assert lake.query("SELECT status FROM runs WHERE run_id = 'run2'").column(0).to_pylist() == ["ok"]


def test_another_command_in_between_breaks_the_resume_chain(lake: Lake):
    with pytest.raises(RuntimeError):
        with lake.transaction("a", run=_run()):
            lake.commit_unit("layer=0")
            raise RuntimeError
    with lake.transaction("b", run=_run("ingest sae")):
        _tl(lake, 0, 2)
    assert lake.finished_units("match", resume_key(_run().params)) == set()


def test_a_params_key_that_leaves_out_options_still_matches(lake: Lake):
    params = {"release": "r", "workers": 2, "executor": "ray", "home": "/h"}
    with pytest.raises(RuntimeError):
        with lake.transaction("a", run=_run(params=params)):
            lake.commit_unit("pair=0-1")
            raise RuntimeError
    assert lake.finished_units("match", json.dumps({"release": "r"})) == {"pair=0-1"}
    assert lake.finished_units("match", json.dumps({"release": "r", "seed": 1})) == set()


def test_deletes_and_writes_apply_in_order(lake: Lake):
    _tl(lake, 0, 2)
    _tl(lake, 1, 2)
    with lake.transaction():
        lake.delete_partition("training_log", release="r")
        _tl(lake, 1, 4)
    assert lake.query("SELECT layer, count(*) n FROM training_log GROUP BY 1").to_pylist() == [{"layer": 1, "n": 4}]
    assert _raw(lake, "training_log") == 4
    assert not (lake.table_dir("training_log") / "release=r" / "layer=0").exists()


def test_delete_rows_rewrites_only_touched_partitions(lake: Lake):
    _tl(lake, 0, 4)
    _tl(lake, 1, 4)
    f1 = lake.manifest().files["training_log/release=r/layer=1"]
    with lake.transaction():
        assert lake.delete_rows("training_log", '"layer" = $1 AND "step" >= $2', [0, 2]) == 2
        assert lake.delete_rows("training_log", '"layer" = $1 AND "step" = $2', [0, 0]) == 1  # again
    assert lake.query("SELECT layer, step FROM training_log WHERE layer = 0").to_pylist() == [{"layer": 0, "step": 1}]
    assert lake.manifest().files["training_log/release=r/layer=1"] == f1
    with lake.transaction():
        lake.delete_rows("training_log", '"layer" = 0', [])
    assert "training_log/release=r/layer=0" not in lake.manifest().files


def test_reader_open_finishes_links_a_kill_left(lake: Lake):
    _tl(lake, 0, 3)
    _tl(lake, 1, 3)
    with lake.transaction():
        _tl(lake, 0, 9)
        lake.delete_partition("training_log", release="r", layer=1)
    # as if killed right after the manifest switch: the old links and stamp are back
    link = lake.table_dir("training_log") / "release=r" / "layer=0" / "part-0.parquet"
    old = lake.home / ".versions" / "x.parquet"
    pq.write_table(pa.table({"step": pa.array([0], pa.int32())}), old)
    os.replace(old, link)
    (lake.home / versions.LINKS_STAMP).write_text("1")
    assert _n(Lake(lake.home), "SELECT count(*) FROM training_log") == 9   # a reader, through the manifest
    assert _raw(lake, "training_log") == 9                                    # and it fixed the folders


def test_gc_keeps_recent_versions_then_drops_them(lake: Lake, monkeypatch):
    monkeypatch.setenv("SAEW_GC_GRACE", "0")
    monkeypatch.setenv("SAEW_GC_KEEP", "2")
    for n in range(1, 6):
        _tl(lake, 0, n)
    store = sorted((lake.home / ".versions" / "training_log").rglob("*.parquet"))
    m = lake.manifest()
    assert len(m.retired) <= 2 and len(store) == 1 + len(m.retired)
    # an orphan of a killed writer goes at the next writer's open (past the grace time)
    orphan = lake.home / ".versions" / "training_log" / "release=r" / "layer=0" / "part-dead.parquet"
    orphan.write_bytes(b"x")
    with lake.write_lock():
        pass
    assert not orphan.exists()


def test_saelens_folder_commits_with_the_unit(lake: Lake):
    dest = lake.home / "saes" / "r" / "blocks.0.hook_resid_post"
    with lake.transaction():
        d = stage_saelens_folder(lake, "r", "blocks.0.hook_resid_post")
        (d / "cfg.json").write_text('{"v": 1}')
        assert not dest.exists()
    assert json.loads((dest / "cfg.json").read_text()) == {"v": 1} and dest.is_symlink()
    with pytest.raises(RuntimeError):
        with lake.transaction():
            (stage_saelens_folder(lake, "r", "blocks.0.hook_resid_post") / "cfg.json").write_text('{"v": 2}')
            raise RuntimeError("killed")
    assert json.loads((dest / "cfg.json").read_text()) == {"v": 1}
    with lake.transaction():
        (stage_saelens_folder(lake, "r", "blocks.0.hook_resid_post") / "cfg.json").write_text('{"v": 3}')
    assert json.loads((dest / "cfg.json").read_text()) == {"v": 3}
    assert not os.path.isabs(os.readlink(dest))   # relative: the home can move


def test_home_before_the_version_store_opens_as_it_is(home):
    """A lake of bare part-0.parquet files (and an old runs file without units)."""
    lake = Lake(home)
    d = home / "lake" / "training_log" / "release=r" / "layer=0"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"step": pa.array([0, 1], pa.int32()), "tokens_seen": pa.array([1, 2], pa.int64()),
                             "mse": [0.0, 0.0], "fvu": [0.0, 0.0], "l0": [0.0, 0.0], "dead_frac": [0.0, 0.0]}),
                   d / "part-0.parquet")
    r = home / "lake" / "runs" / "run_id=old"
    r.mkdir(parents=True)
    pq.write_table(pa.table({"command": ["ingest sae"], "params": ["{}"],
                             "started_at": pa.array([0], pa.timestamp("us")),
                             "finished_at": pa.array([0], pa.timestamp("us")), "status": ["ok"],
                             "version": ["0.1.0"]}), r / "part-0.parquet")
    assert _n(lake, "SELECT count(*) FROM training_log") == 2
    assert lake.query("SELECT run_id, units FROM runs").to_pylist() == [{"run_id": "old", "units": None}]
    assert _raw(lake, "training_log") == 2
    _tl(lake, 0, 5)
    assert _n(lake, "SELECT count(*) FROM training_log") == 5


def test_manifest_holds_no_absolute_path(lake: Lake):
    put_sae(lake, "r", 0, make_sae())
    text = (lake.home / versions.MANIFEST).read_text()
    assert str(lake.home) not in text and '"/' not in text


def test_moved_and_copied_homes_are_independent_warehouses(tmp_path):
    import shutil
    import subprocess

    from saew.storage import catalog

    a = Lake(tmp_path / "a")
    p = make_sae(8, 16, seed=1)
    put_sae(a, "r", 0, p)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    b = Lake(tmp_path / "b")
    np.testing.assert_array_equal(load_sae(b, "r", 0).w_dec, p.w_dec)
    con = catalog.connect(b)
    try:
        sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'features'").fetchone()[0]
        assert str(tmp_path / "b") in sql and str(tmp_path / "a") + "/" not in sql
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 16
    finally:
        con.close()
    subprocess.run(["cp", "-r", str(tmp_path / "b"), str(tmp_path / "c")], check=True)
    c = Lake(tmp_path / "c")
    q = make_sae(8, 4, seed=2)
    put_sae(c, "r", 0, q)
    assert _n(c, "SELECT count(*) FROM features") == 4
    assert _n(b, "SELECT count(*) FROM features") == 16       # the original is untouched
    con = catalog.connect(b)
    try:
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 16
    finally:
        con.close()
