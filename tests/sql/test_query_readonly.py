"""``saew query`` is read-only (issue 15, item 6): what it runs, what --allow-write adds, and
that a read torn by a write under way is retried instead of reported as the user's SQL.

The refusals themselves (COPY, ATTACH, INSTALL, ... each exit 2, one line, lake unchanged)
are rows of ``tests/test_refusals.py``; here: the statements that must still run, --allow-write
writing outside the home, and the retry.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from saew.storage.lake import Lake
from tests.factories import make_sae, put_sae


@pytest.fixture
def one(lake: Lake) -> Lake:
    put_sae(lake, "r", 0, make_sae(8, 16, "relu", seed=0))
    return lake


@pytest.mark.parametrize("sql", [
    "SELECT count(*) AS n FROM features",
    "-- a comment first\nWITH t AS (SELECT 1 AS a) SELECT * FROM t",
    "DESCRIBE saes",
    "SHOW TABLES",
    "SUMMARIZE SELECT d_sae FROM saes",
    "EXPLAIN SELECT * FROM saes",
    "EXPLAIN ANALYZE SELECT count(*) FROM features",
    "PRAGMA table_info('saes')",
    "SET threads = 1; SELECT 42 AS x",
    "SET VARIABLE lim = 3; SELECT getvariable('lim') AS x",
    "SELECT * FROM duckdb_settings() WHERE name = 'threads'",
])
def test_reading_statements_run(saew, one, sql):
    code, out, err = saew("query", sql, "--format", "csv")
    assert code == 0, err
    assert out.strip()


def test_allow_write_copies_outside_the_home(saew, one, tmp_path):
    target = tmp_path / "out" / "d.csv"
    target.parent.mkdir()
    sql = f"COPY (SELECT release, layer, d_sae FROM saes) TO '{target}' (HEADER)"
    code, _, err = saew("query", sql)
    assert code == 2 and "COPY statements are refused" in err and not target.exists()
    code, _, err = saew("query", sql, "--allow-write")
    assert code == 0, err
    assert target.read_text().splitlines() == ["release,layer,d_sae", "r,0,16"]


def test_allow_write_refuses_a_symlink_into_the_home(saew, one, home, tmp_path):
    link = tmp_path / "innocent"
    link.symlink_to(home / "lake")
    code, _, err = saew("query", f"COPY (SELECT 1 AS a) TO '{link}/x.parquet'", "--allow-write")
    assert code == 2 and "is inside the home" in err
    assert not (home / "lake" / "x.parquet").exists()


def test_query_output_file_is_written_outside_the_home(saew, one, tmp_path):
    out = tmp_path / "q.parquet"
    code, _, err = saew("query", "SELECT d_sae FROM saes", "--format", "parquet", "--out", out)
    assert code == 0 and out.exists(), err


def _tear(part: Path, seconds: float) -> threading.Thread:
    """Replace a lake file with a torn one (its first 40 bytes) and restore it after ``seconds``:
    what a reader sees when it opens a file a writer is in the middle of replacing."""
    good = part.read_bytes()
    part.write_bytes(good[:40])

    def restore():
        time.sleep(seconds)
        part.write_bytes(good)

    t = threading.Thread(target=restore)
    t.start()
    return t


def test_a_read_torn_by_a_write_is_retried(saew, one, home):
    part = next((home / "lake" / "features").rglob("*.parquet"))
    t = _tear(part, 0.3)
    try:
        code, out, err = saew("query", "SELECT count(*) AS n FROM features", "--format", "json")
    finally:
        t.join()
    assert code == 0, err
    assert json.loads(out) == [{"n": 16}]


def test_a_lake_that_stays_torn_is_not_blamed_on_the_sql(saew, one, home, monkeypatch):
    from saew.sql import query

    monkeypatch.setattr(query, "RETRY_WAIT", 0.001)
    part = next((home / "lake" / "features").rglob("*.parquet"))
    good = part.read_bytes()
    part.write_bytes(good[:40])
    try:
        code, _, err = saew("query", "SELECT count(*) AS n FROM features")
    finally:
        part.write_bytes(good)
    assert code == 3 and err.count("\n") == 1 and "kept changing" in err, err


def test_output_into_a_closed_pipe_is_quiet(one, home):
    """``saew query ... | head -1``: no BrokenPipeError traceback, the reader gets its line."""
    import subprocess
    import sys

    cmd = (f"{sys.executable} -m saew query 'SELECT * FROM range(200000)' --format csv --max-rows 200000 "
           f"--home {home} | head -1")
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, timeout=300)
    assert r.stdout == "range\n"
    assert r.stderr == "", r.stderr
    assert r.returncode == 0


_FRAGMENTS = ["SELECT", "COPY", "ATTACH", "EXPLAIN", "ANALYZE", "PRAGMA", "SET", "TO", "FROM", "saes", "1", ";",
              "(", ")", "'x'", "'/tmp/y'", "--", "/*", "*/", "INSTALL", "LOAD", "DROP", "VIEW", "DATABASE", "EXPORT",
              "IMPORT", "WITH", "AS", "t", "threads", "=", "VARIABLE", "RESET", "CALL", "DESCRIBE", "\n", '"', "$1"]


def test_the_checker_never_crashes_and_never_lets_a_copy_through(home):
    """Random statements built from SQL words: ``readonly.check`` passes them or refuses them
    with BadInput (no other exception), and whatever it passes in read-only mode has only
    reading statement types (DuckDB's parser is the oracle)."""
    hypothesis = pytest.importorskip("hypothesis")
    import duckdb
    from hypothesis import HealthCheck, given, settings, strategies as st

    from saew.errors import BadInput
    from saew.sql import readonly

    del hypothesis

    @settings(max_examples=150, deadline=2000, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=12))
    def check(words):
        sql = " ".join(words)
        for allow in (False, True):
            try:
                sts = readonly.check(sql, allow_write=allow, home=home)
            except BadInput as e:
                assert "\n" not in str(e)
                continue
            if not allow:
                for s in sts:
                    assert s.type in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN,
                                      duckdb.StatementType.PRAGMA, duckdb.StatementType.SET), sql

    check()
