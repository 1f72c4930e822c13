"""The DuckLake storage engine: the lake's tables in a DuckLake (a SQL catalog + Parquet files).

Making a DuckLake home::

    saew init --lake ducklake                       # catalog <home>/ducklake.sqlite, data <home>/ducklake-data/
    saew init --lake ducklake --catalog "postgres:dbname=saew host=127.0.0.1 port=5432 user=saew" \
              [--data-path DIR]                     # many writers (a Postgres catalog)

``saew init`` writes ``<home>/saew.toml`` (:mod:`saew.storage.config`). ``Lake(home)`` reads it and,
for ``engine = "ducklake"``, hands its storage calls to a :class:`DuckLake` (``Lake.engine``); a
home without the file is the Parquet lake. Steps, dbt and tests use ``Lake`` only.

How it maps the lake's operations (``saew.storage.lake``):

* Every table of :mod:`saew.storage.schemas` is a DuckLake table ``lake.<table>`` with the contract
  columns, ``SET PARTITIONED BY (<partition_by>)`` (files land under Hive-style folders of the data
  path; the partition columns are also stored inside the files).
* A unit of work (``Lake.commit_unit`` / the transaction's end) applies the unit's staged ops in ONE
  DuckLake transaction, i.e. one snapshot: partition deletes (``DELETE WHERE`` leading partition
  columns = values), then each staged partition (``DELETE WHERE`` partition = values, then ``INSERT``
  from the staged Parquet file), the ``runs`` row among them; ``set_commit_message('saew', command,
  extra_info => {"run_id", "units"})`` labels the snapshot (``saew snapshots``). A conflict DuckLake
  cannot resolve by its own retries is retried ``COMMIT_TRIES`` times, then ``LockBusy`` (exit 3).
  ``Lake.delete_rows`` rewrites the partitions it touches (delete + insert of the kept rows), so
  every ``DELETE`` covers whole files and DuckLake drops them: no delete files are written.
* Readers (``Lake.connect/query/scan_sql/has_data`` and the catalog ``<home>/saew.duckdb``) read the
  explicit data files of ONE snapshot (``ducklake_list_files``), so ``saew.duckdb`` stays a plain
  self-contained DuckDB file for BI tools and dbt (no extension, no catalog connection), and each
  view shows one snapshot: a unit all or none. Should a delete file show up (another tool deleted
  rows), the view subtracts it (an anti-join on ``file_path, pos``), still from files only.
* SAELens folders (``Lake.stage_dir``) keep the file-based version store of
  :mod:`saew.storage.versions` (a manifest holding only folders), committed just BEFORE the
  unit's DuckLake transaction: a kill between the two leaves a new folder version whose table rows
  did not commit (re-running the command replaces it), never rows without their folder.
* The writer lock is per slice (:mod:`saew.storage.locks`): commands on different releases write
  at once (a Postgres catalog takes concurrent commits; a SQLite one may report "database is
  locked", retried like a conflict); a command naming no release takes the whole home.
* With ``--executor ray``, a step's Ray tasks commit their own units (``compute.units.
  commit_in_task``): one snapshot per unit from the task (``extra_info`` holds the driver's
  run_id and ``"task": true``), the driver's ``runs`` row in a snapshot of its own after it.
* Snapshots are never expired by saew, so ``saew query --at SNAPSHOT`` can read any of them.

Interface: ``Lake(home).engine`` is a :class:`DuckLake` (None on a Parquet home); ``.snapshot(at)``
(a :class:`Snapshot`: ``version``, ``table_files(t)``, ``delete_files(t)``), ``.snapshots()``,
``.cursor()`` (a cursor on this process's connection, the DuckLake attached as ``lake``),
``.ensure_tables()``; :func:`open_connection` (a fresh connection, e.g. in a test);
``Lake.write_lock(release=R)``; ``SAEW_CHAOS_KILL_AT=ducklake`` kills inside the transaction.

Extensions come from the pip packages ``duckdb-extension-{ducklake,sqlite,postgres}`` (bare
``.duckdb_extension`` files): ``INSTALL '<file>'`` into ``<home>/.duckdb_extensions`` (``SET
extension_directory``), then ``LOAD``; never from the network (``autoinstall_known_extensions`` and
``autoload_known_extensions`` off).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import duckdb
import pyarrow as pa

from saew.errors import BadInput, LockBusy
from saew.storage.config import LakeConfig
from saew.storage.schemas import TABLES, TableSpec
from saew.storage.versions import chaos, lock

ALIAS = "lake"                    # the attached DuckLake's name (README: the notebook ATTACH line)
EXT_DIR = ".duckdb_extensions"    # under the home
AUTHOR = "saew"
COMMIT_TRIES = 5
CHAOS_POINT = "ducklake"          # SAEW_CHAOS_KILL_AT: inside the unit's transaction, before COMMIT
_EXT_NAMES = {"ducklake": "ducklake", "sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}


# ---------------------------------------------------------------------------- extensions
def extension_file(name: str) -> Path:
    """The bare ``.duckdb_extension`` file the pip package ``duckdb-extension-<name>`` ships for
    this duckdb version."""
    import importlib.resources as ir

    try:
        root = ir.files(f"duckdb_extension_{name}")
    except ModuleNotFoundError:
        raise BadInput(f"the DuckLake engine needs the package duckdb-extension-{name}=={duckdb.__version__} "
                       f"(make install)") from None
    p = Path(str(root)) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not p.exists():
        found = sorted(Path(str(root)).glob("extensions/*/*.duckdb_extension"))
        raise BadInput(f"duckdb-extension-{name}: no extension for duckdb {duckdb.__version__} "
                       f"(found {', '.join(f.parent.name for f in found) or 'none'})")
    return p


def _catalog_kind(cfg: LakeConfig) -> str:
    return cfg.catalog.split(":", 1)[0]


def open_connection(home: Path, cfg: LakeConfig) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the home's DuckLake attached as ``lake`` (extensions loaded from
    the pip packages, nothing from the network)."""
    ext_dir = home / EXT_DIR
    ext_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "extension_directory": str(ext_dir)})
    for name in ("ducklake", _catalog_kind(cfg)):
        try:
            con.execute(f"LOAD {_EXT_NAMES[name]}")
        except duckdb.Error:
            with lock(home, ".extensions.lock", 120):
                con.execute(f"INSTALL '{_q(str(extension_file(name)))}'")
            con.execute(f"LOAD {_EXT_NAMES[name]}")
    Path(cfg.data_path).mkdir(parents=True, exist_ok=True)
    con.execute(f"ATTACH '{_q(cfg.attach_uri)}' AS {ALIAS} "
                f"(DATA_PATH '{_q(cfg.data_path)}', DATA_INLINING_ROW_LIMIT 0)")
    return con


def attach_sql(home: Path, cfg: LakeConfig) -> str:
    """The lines a notebook or BI tool runs to read this home's DuckLake (docs, ``saew snapshots``)."""
    return (f"SET extension_directory = '{_q(str(home / EXT_DIR))}'; LOAD ducklake; "
            f"LOAD {_EXT_NAMES[_catalog_kind(cfg)]}; "
            f"ATTACH '{_q(cfg.attach_uri)}' AS {ALIAS} (DATA_PATH '{_q(cfg.data_path)}', READ_ONLY);")


def _q(s: str) -> str:
    return s.replace("'", "''")


# ---------------------------------------------------------------------------- snapshots
@dataclass(frozen=True)
class Snapshot:
    """One DuckLake snapshot as the readers see it: its id (``version``, which the catalog
    records like a manifest version) and, per table, its data files (absolute paths) and the
    delete files that apply to them. Listed lazily, per table."""
    version: int
    lister: Callable[[list[str], int], dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]]] = field(
        repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    dirs: Mapping[str, str] = field(default_factory=dict, compare=False)

    def prefetch(self, tables: Iterable[str]) -> None:
        """List the files of several tables in one query (cheaper than one query each)."""
        todo = [t for t in tables if t not in self._cache]
        if todo:
            self._cache.update(self.lister(todo, self.version))

    def _get(self, table: str):
        if table not in self._cache:
            self.prefetch([table])
        return self._cache[table]

    def table_files(self, table: str) -> list[str]:
        return list(self._get(table)[0])

    def delete_files(self, table: str) -> list[tuple[str, str]]:
        """(data file, delete file) pairs of ``table``: empty unless another tool deleted rows."""
        return list(self._get(table)[1])


_CONS: dict[tuple[int, str], duckdb.DuckDBPyConnection] = {}
_READY: set[tuple[int, str]] = set()   # homes whose tables this process checked


class DuckLake:
    """The engine of a DuckLake home; one attached connection per process (cursors per use)."""

    def __init__(self, home: Path, cfg: LakeConfig):
        self.home, self.cfg = home, cfg

    # ------------------------------------------------------------------ connection
    def cursor(self) -> duckdb.DuckDBPyConnection:
        key = (os.getpid(), str(self.home))
        con = _CONS.get(key)
        if con is None:
            try:
                con = open_connection(self.home, self.cfg)
            except duckdb.Error as e:
                raise BadInput(f"{self.home}: cannot open the DuckLake catalog {self.cfg.catalog} "
                               f"({str(e).splitlines()[0]})") from None
            _CONS[key] = con
        return con.cursor()

    @staticmethod
    def close_all() -> None:
        for k in list(_CONS):
            _CONS.pop(k).close()

    # ------------------------------------------------------------------ tables
    def ensure_tables(self) -> None:
        """Create the missing tables (partitioned as the schemas say) and add missing columns,
        in one transaction; nothing happens when the catalog is up to date. Two writers doing
        it at once: the loser of the conflict looks again."""
        for attempt in range(COMMIT_TRIES):
            try:
                return self._ensure_tables()
            except duckdb.Error as e:
                if not _conflict(e) and "already exists" not in str(e) or attempt == COMMIT_TRIES - 1:
                    raise
                time.sleep(0.2 * 2 ** attempt)

    def _ensure_tables(self) -> None:
        cur = self.cursor()
        try:
            have: dict[str, set[str]] = {}
            for t, c in cur.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                    "WHERE database_name = ? AND schema_name = 'main'", [ALIAS]).fetchall():
                have.setdefault(t, set()).add(c)
            todo: list[str] = []
            for name, t in TABLES.items():
                if name not in have:
                    cols = ", ".join(f'"{f.name}" {t.duckdb_type(f.name)}' for f in t.schema)
                    todo.append(f'CREATE TABLE {ALIAS}.main."{name}" ({cols})')
                    todo.append(f'ALTER TABLE {ALIAS}.main."{name}" SET PARTITIONED BY '
                                f'({", ".join(chr(34) + c + chr(34) for c in t.partition_by)})')
                else:
                    todo += [f'ALTER TABLE {ALIAS}.main."{name}" ADD COLUMN "{f.name}" {t.duckdb_type(f.name)}'
                             for f in t.schema if f.name not in have[name]]
            if todo:
                cur.execute("BEGIN")
                try:
                    for s in todo:
                        cur.execute(s)
                    cur.execute(f"CALL {ALIAS}.set_commit_message('{AUTHOR}', 'schema', extra_info => NULL)")
                    cur.execute("COMMIT")
                except duckdb.Error:
                    try:
                        cur.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    raise
            _READY.add((os.getpid(), str(self.home)))
        finally:
            cur.close()

    # ------------------------------------------------------------------ reading
    def current(self) -> int:
        cur = self.cursor()
        try:
            return int(cur.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])
        finally:
            cur.close()

    def snapshot(self, at: int | None = None) -> Snapshot:
        """The current snapshot, or snapshot ``at`` (BadInput if there is none such)."""
        if at is None:
            return Snapshot(self.current(), self._list)  # type: ignore[arg-type]
        ids = self.snapshot_ids()
        if int(at) not in ids:
            raise BadInput(f"--at {at}: no such snapshot (snapshots {min(ids)}..{max(ids)}; see saew snapshots)")
        return Snapshot(int(at), self._list)

    def snapshot_ids(self) -> set[int]:
        cur = self.cursor()
        try:
            return {int(r[0]) for r in cur.execute(f"SELECT snapshot_id FROM {ALIAS}.snapshots()").fetchall()}
        finally:
            cur.close()

    def _list(self, tables: list[str], version: int | None,
              cur: duckdb.DuckDBPyConnection | None = None) -> dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]]:
        """{table: (data files, (data file, delete file) pairs)} at snapshot ``version`` (None:
        the one ``cur``'s transaction sees), one query for all tables; a table that did not
        exist yet at that snapshot has no files."""
        own = cur is None
        cur = cur or self.cursor()
        at = "" if version is None else f", snapshot_version => {int(version)}"
        try:
            try:
                rows = cur.execute(" UNION ALL ".join(
                    f"SELECT '{t}' AS t, data_file, delete_file FROM ducklake_list_files('{ALIAS}', '{t}'{at})"
                    for t in tables) + " ORDER BY t, data_file").fetchall()
            except duckdb.Error:
                if len(tables) == 1:
                    return {tables[0]: ((), ())}
                out: dict = {}
                for t in tables:
                    out.update(self._list([t], version, cur))
                return out
        finally:
            if own:
                cur.close()
        out = {t: ([], []) for t in tables}
        for t, f, d in rows:
            out[t][0].append(f)
            if d:
                out[t][1].append((f, d))
        return {t: (tuple(a), tuple(b)) for t, (a, b) in out.items()}

    def snapshots(self) -> pa.Table:
        """(snapshot_id, snapshot_time, command, run_id) of every snapshot, oldest first."""
        cur = self.cursor()
        try:
            return cur.execute(
                f"SELECT snapshot_id, CAST(snapshot_time AS TIMESTAMP) AS snapshot_time, "
                f"coalesce(commit_message, CASE WHEN snapshot_id = 0 THEN 'init' END) AS command, "
                f"json_extract_string(commit_extra_info, '$.run_id') AS run_id "
                f"FROM {ALIAS}.snapshots() ORDER BY snapshot_id").to_arrow_table()
        finally:
            cur.close()

    # ------------------------------------------------------------------ writing
    def commit(self, deletes: Iterable[tuple[TableSpec, Mapping[str, object]]],
               puts: Iterable[tuple[TableSpec, Mapping[str, object], Path]],
               command: str, extra: Mapping[str, object]) -> int:
        """Apply a unit in ONE DuckLake transaction (one snapshot): the partition deletes, then
        each staged partition (delete + insert from its staged Parquet). Returns the snapshot id.
        Conflicts are retried; ``LockBusy`` after ``COMMIT_TRIES``."""
        deletes, puts = list(deletes), list(puts)
        if (os.getpid(), str(self.home)) not in _READY:
            self.ensure_tables()
        last: Exception | None = None
        for attempt in range(COMMIT_TRIES):
            cur = self.cursor()
            try:
                cur.execute("BEGIN")
                have = self._partitions(cur, sorted({t.name for t, _ in deletes} | {t.name for t, _, _ in puts}))
                for t, part in [*deletes, *((t, part) for t, part, _ in puts)]:
                    if _holds(have, t, part):   # a DELETE costs a scan: skip partitions without files
                        w, vals = _where(t, part)
                        cur.execute(f'DELETE FROM {ALIAS}.main."{t.name}" WHERE {w}', vals)
                for t, part, staged in puts:
                    consts = ", ".join(f'CAST(? AS {t.duckdb_type(c)}) AS "{c}"' for c in part)
                    cur.execute(f'INSERT INTO {ALIAS}.main."{t.name}" BY NAME SELECT *, {consts} '
                                f"FROM read_parquet('{_q(str(staged))}', hive_partitioning = false)", list(part.values()))
                cur.execute(f"CALL {ALIAS}.set_commit_message('{AUTHOR}', '{_q(command)}', "
                            f"extra_info => '{_q(json.dumps(dict(extra), sort_keys=True))}')")
                chaos(CHAOS_POINT)
                cur.execute("COMMIT")
                chaos("committed")
                return int(cur.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])
            except duckdb.Error as e:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                if not _conflict(e):
                    raise
                last = e
                time.sleep(0.2 * 2 ** attempt)
            finally:
                cur.close()
        first = str(last).splitlines()[0] if last else "conflict"
        raise LockBusy(f"{self.home}: the DuckLake commit kept conflicting with other writers ({first}); "
                       f"nothing of this unit was written; try again")


    def _partitions(self, cur: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, list[tuple | None]]:
        """{table: partition values of each data file the transaction sees} (None for a file
        whose path is not ``<table>/<col>=<v>/.../<file>``: then every DELETE runs)."""
        if not tables:
            return {}
        listed = self._list(tables, None, cur)
        return {t: [_path_part(TABLES[t], f) for f in files] for t, (files, _) in listed.items()}


def _path_part(t: TableSpec, path: str) -> tuple | None:
    """The partition values (as strings) in a DuckLake data file's Hive-style path."""
    segs = path.split("/")
    try:
        i = len(segs) - 1 - segs[::-1].index(t.name)
    except ValueError:
        return None
    vals = segs[i + 1:-1]
    if len(vals) != len(t.partition_by):
        return None
    out = []
    for c, seg in zip(t.partition_by, vals):
        k, sep, v = seg.partition("=")
        if k != c or not sep:
            return None
        out.append(v)
    return tuple(out)


def _holds(have: Mapping[str, list[tuple | None]], t: TableSpec, part: Mapping[str, object]) -> bool:
    """Whether some data file of ``t`` may lie under the leading partition values ``part``."""
    want = tuple(str(v) for v in part.values())
    return any(p is None or p[:len(want)] == want for p in have.get(t.name, []))


def _where(t: TableSpec, part: Mapping[str, object]) -> tuple[str, list]:
    return " AND ".join(f'"{c}" = CAST(? AS {t.duckdb_type(c)})' for c in part), list(part.values())


def _conflict(e: duckdb.Error) -> bool:
    msg = str(e).lower()
    return isinstance(e, duckdb.TransactionException) or "conflict" in msg or "database is locked" in msg \
        or "could not serialize" in msg
