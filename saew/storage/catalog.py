"""The DuckDB catalog ``<home>/saew.duckdb``: one view per lake table, plus the dbt models."""
from __future__ import annotations

import time

import duckdb

from saew.storage.lake import Lake
from saew.storage.schemas import TABLES


def catalog_path(lake: Lake):
    return lake.home / "saew.duckdb"


def _open(lake: Lake, read_only: bool, tries: int = 50) -> duckdb.DuckDBPyConnection:
    last: Exception | None = None
    for _ in range(tries):
        try:
            return duckdb.connect(str(catalog_path(lake)), read_only=read_only)
        except duckdb.IOException as e:  # another process holds the file for writing
            last = e
            time.sleep(0.1)
    raise last  # type: ignore[misc]


def refresh(lake: Lake) -> None:
    """(Re)create one view per lake table; empty tables become typed zero-row views."""
    lake.home.mkdir(parents=True, exist_ok=True)
    con = _open(lake, read_only=False)
    try:
        for name in TABLES:
            con.execute(f'CREATE OR REPLACE VIEW main."{name}" AS {lake.scan_sql(name)}')
    finally:
        con.close()


def connect(lake: Lake, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the catalog, creating it first if it does not exist yet.

    Falls back to an in-memory connection with lake views when the file is busy
    (e.g. while ``dbt build`` writes it), so readers are never blocked.
    """
    if not catalog_path(lake).exists():
        refresh(lake)
    try:
        return _open(lake, read_only=read_only, tries=20)
    except duckdb.IOException:
        if not read_only:
            raise
        return lake.connect()
