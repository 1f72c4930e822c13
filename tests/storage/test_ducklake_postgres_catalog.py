"""DuckLake on a Postgres catalog, straight from DuckDB (no saew code): offline and many writers.

Proves what the DuckLake engine relies on, independently of it: duckdb 1.5.5 ``LOAD``s the
``ducklake`` and ``postgres`` extensions from the files the pip packages ship (no network, no
extension directory), attaches ``ducklake:postgres:<dsn>`` with ``DATA_INLINING_ROW_LIMIT 0``
(every insert becomes a Parquet file), and 4 processes x 40 concurrent one-row commits all land:
160 rows, each (writer, i) exactly once, one snapshot per commit.
"""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import pg_catalog, pg_server  # noqa: F401  (fixtures)

duckdb = pytest.importorskip("duckdb")
WRITERS, COMMITS = 4, 40


def extension_file(dist: str, name: str, folder: Path) -> str:
    """The ``.duckdb_extension`` file shipped by pip package ``dist``, as ``folder/<name>.duckdb_extension``
    (a symlink: ``LOAD`` calls the entry point ``<file stem>_duckdb_cpp_init``, and the postgres
    package's file is ``postgres.duckdb_extension`` while the extension is ``postgres_scanner``)."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{dist} not installed (pyproject pins it with duckdb 1.5.5)")
    for f in files:
        if str(f).endswith(".duckdb_extension"):
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / f"{name}.duckdb_extension"
            link.symlink_to(Path(f.locate()).resolve())
            return str(link)
    pytest.skip(f"{dist} ships no .duckdb_extension file")


# a writer process: argv = ducklake ext, postgres ext, catalog, data path, writer id, commits
WRITER = """
import sys, duckdb
ducklake, postgres, catalog, data, w, n = sys.argv[1:]
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
con.execute(f"LOAD '{postgres}'"); con.execute(f"LOAD '{ducklake}'")
con.execute(f"ATTACH 'ducklake:{catalog}' AS l (DATA_PATH '{data}', DATA_INLINING_ROW_LIMIT 0)")
for i in range(int(n)):
    con.execute("INSERT INTO l.t VALUES (?, ?)", [int(w), i])
"""


def connect(ducklake: str, postgres: str, catalog: str, data: Path):
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{postgres}'")
    con.execute(f"LOAD '{ducklake}'")
    con.execute(f"ATTACH 'ducklake:{catalog}' AS l (DATA_PATH '{data}/', DATA_INLINING_ROW_LIMIT 0)")
    return con


def test_ducklake_on_postgres_offline_many_writers(pg_catalog: str, tmp_path: Path) -> None:  # noqa: F811
    ducklake = extension_file("duckdb-extension-ducklake", "ducklake", tmp_path / "ext")
    postgres = extension_file("duckdb-extension-postgres", "postgres_scanner", tmp_path / "ext")
    data = tmp_path / "data"
    con = connect(ducklake, postgres, pg_catalog, data)
    con.execute("CREATE TABLE l.t (w INTEGER, i INTEGER)")
    con.execute("INSERT INTO l.t VALUES (-1, -1)")
    assert list(data.rglob("*.parquet")), "the first insert was inlined, not written as Parquet"
    before = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('l')").fetchone()[0]

    procs = [subprocess.Popen([sys.executable, "-c", WRITER, ducklake, postgres, pg_catalog, f"{data}/",
                               str(w), str(COMMITS)], stderr=subprocess.PIPE, text=True)
             for w in range(WRITERS)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, "\n".join(e[-1500:] for e in errs)

    con.execute("DETACH l")  # a fresh attach: read what the catalog holds, not this session's cache
    con.execute(f"ATTACH 'ducklake:{pg_catalog}' AS l (DATA_PATH '{data}/')")
    got = con.execute("SELECT w, i FROM l.t WHERE w >= 0 ORDER BY w, i").fetchall()
    assert got == [(w, i) for w in range(WRITERS) for i in range(COMMITS)]
    after = con.execute("SELECT count(*) FROM ducklake_snapshots('l') WHERE snapshot_id > ?",
                        [before]).fetchone()[0]
    assert after == WRITERS * COMMITS  # one snapshot per commit, none merged, none lost
