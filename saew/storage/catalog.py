"""The DuckDB catalog ``<home>/saew.duckdb``: one view per lake table, plus the dbt models.

Each view reads the explicit data files of one lake manifest (absolute paths, since outside
readers such as BI tools and dbt need them), so a catalog reader sees each unit of work all
or none. The table ``_saew_catalog(home, version)`` records the home and manifest version the
views were built for; a catalog opened from a moved or copied home, or behind the lake, is
rebuilt on the next open (by a reader too).

Readers never block writers: a refresh rewrites the views in place when no one holds the
file, and otherwise builds a copy beside it and swaps it in with one ``os.replace`` (a reader
holding the old file keeps reading the old views, whose files the lake keeps for a grace
time). ``building`` gives ``saew build`` such a copy to run dbt on, swapped in when dbt
succeeds, so mart readers never see a half-built catalog. One inter-process lock
(``<home>/.catalog.lock``, never held by a reader that only reads) orders the rewrites.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from saew.storage.lake import Lake
from saew.storage.schemas import TABLES
from saew.storage.versions import Manifest, chaos, lock

CATALOG = "saew.duckdb"
META = "_saew_catalog"
LOCK = ".catalog.lock"


def catalog_path(lake: Lake) -> Path:
    return lake.home / CATALOG


def _open(path: Path, read_only: bool, tries: int = 50) -> duckdb.DuckDBPyConnection:
    last: Exception | None = None
    for _ in range(tries):
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:  # another process holds the file for writing
            last = e
            time.sleep(0.1)
    raise last  # type: ignore[misc]


def _write_views(con: duckdb.DuckDBPyConnection, lake: Lake, m: Manifest) -> None:
    """All views and the meta row in one transaction, then a checkpoint (no WAL left)."""
    if hasattr(m, "prefetch"):
        m.prefetch(TABLES)   # a DuckLake snapshot: one listing query for every table
    con.execute("BEGIN TRANSACTION")
    for i, name in enumerate(TABLES):
        con.execute(f'CREATE OR REPLACE VIEW main."{name}" AS {lake.scan_sql(name, m)}')
        if i == 3:
            chaos("catalog")
    con.execute(f"CREATE OR REPLACE TABLE main.{META} AS SELECT ?::VARCHAR AS home, ?::BIGINT AS version",
                [str(lake.home), m.version])
    con.execute("COMMIT")
    con.execute("CHECKPOINT")


def built_for(con: duckdb.DuckDBPyConnection) -> tuple[str, int] | None:
    """(home, manifest version) a catalog's views were built for; None if unknown."""
    try:
        r = con.execute(f"SELECT home, version FROM main.{META}").fetchall()
    except duckdb.Error:
        return None
    return (r[0][0], int(r[0][1])) if r else None


def _copy(src: Path, dest: Path) -> None:
    if src.exists():
        shutil.copyfile(src, dest)
        wal = src.with_name(src.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))


@contextmanager
def _beside(lake: Lake, folder: str | None = None) -> Iterator[Path]:
    """A scratch copy of the catalog (same file name, so the database name stays ``saew``),
    in ``<home>/<folder>`` (a fixed one keeps dbt's partial parsing valid) or a fresh one."""
    d = lake.home / (folder or f".catalog-tmp/{uuid.uuid4().hex[:12]}")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        tmp = d / CATALOG
        _copy(catalog_path(lake), tmp)
        yield tmp
    finally:
        shutil.rmtree(d, ignore_errors=True)


def refresh(lake: Lake, timeout: float = 120.0) -> None:
    """(Re)create one view per lake table from the current manifest; empty tables become
    typed zero-row views. Raises TimeoutError if another refresh holds the lock too long."""
    lake.home.mkdir(parents=True, exist_ok=True)
    with lock(lake.home, LOCK, timeout) as held:
        if not held:
            raise TimeoutError(f"{lake.home}: the catalog is being rewritten by another command")
        m = lake.open()
        try:
            con = duckdb.connect(str(catalog_path(lake)))  # in place, when no reader holds it
        except duckdb.Error:
            con = None
        if con is not None:
            try:
                _write_views(con, lake, m)
            finally:
                con.close()
            return
        with _beside(lake) as tmp:
            con = duckdb.connect(str(tmp))
            try:
                _write_views(con, lake, m)
            finally:
                con.close()
            os.replace(tmp, catalog_path(lake))


def refresh_quietly(lake: Lake) -> None:
    """``refresh`` after a commit: a failure (a full disk, a long rewrite elsewhere) is one
    warning line; the next open rebuilds the catalog."""
    try:
        refresh(lake, timeout=30.0)
    except Exception as e:  # noqa: BLE001 - the unit is committed; never fail because of this
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"saew: warning: catalog {catalog_path(lake)} not refreshed ({msg}); "
                         f"the next command rebuilds it\n")


@contextmanager
def building(lake: Lake) -> Iterator[Path]:
    """A fresh copy of the catalog for dbt to build its models in; it replaces the catalog
    when the body returns (nothing changes if it raises). Holds the catalog lock."""
    lake.home.mkdir(parents=True, exist_ok=True)
    with lock(lake.home, LOCK, 600.0) as held:
        if not held:
            raise TimeoutError(f"{lake.home}: the catalog is being rewritten by another command")
        with _beside(lake, ".catalog-build") as tmp:
            con = duckdb.connect(str(tmp))
            try:
                _write_views(con, lake, lake.open())
            finally:
                con.close()
            yield tmp
            con = duckdb.connect(str(tmp))  # fold any WAL dbt left into the file
            try:
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, catalog_path(lake))


def _state(lake: Lake) -> tuple[str, int] | None:
    path = catalog_path(lake)
    if not path.exists():
        return None
    try:
        con = _open(path, read_only=True, tries=20)
    except duckdb.Error:
        return None
    try:
        return built_for(con)
    finally:
        con.close()


def connect(lake: Lake, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the catalog, rebuilt first if it is missing, behind the lake, or was
    built for another home (a moved or copied one).

    Falls back to an in-memory connection with lake views (no marts) when the catalog cannot
    be opened or rebuilt right now, so readers are never blocked and never fail.
    """
    m = lake.open()
    state = _state(lake)
    if state != (str(lake.home), m.version):
        try:
            refresh(lake, timeout=2.0)
            state = (str(lake.home), m.version)
        except Exception:  # noqa: BLE001 - busy or a full disk: read what there is
            pass
    if state is None or state[0] != str(lake.home):
        if read_only:
            return lake.connect()
    try:
        return _open(catalog_path(lake), read_only=read_only, tries=20)
    except duckdb.Error:
        if not read_only:
            raise
        return lake.connect()


def connect_at(lake: Lake, at: int) -> duckdb.DuckDBPyConnection:
    """An in-memory connection whose lake-table views read DuckLake snapshot ``at``, with the
    catalog attached read-only behind them (``search_path``), so the dbt models are there too
    (as they are now: they are not versioned). BadInput on a Parquet home or an unknown snapshot."""
    snap = lake.snapshot(at)
    con = duckdb.connect()
    path = catalog_path(lake)
    attached = False
    if path.exists():
        for _ in range(20):
            try:
                con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS saew (READ_ONLY)")
                attached = True
                break
            except duckdb.IOException:  # a refresh holds it for writing
                time.sleep(0.1)
    for name in TABLES:
        con.execute(f'CREATE OR REPLACE VIEW memory.main."{name}" AS {lake.scan_sql(name, snap)}')
    if attached:
        con.execute("SET search_path = 'memory.main,saew.main'")
    return con
