"""The lake: Hive-partitioned Parquet tables, committed in atomic units of work.

What the lake is, is the manifest ``<home>/lake/_manifest.json`` (see
:mod:`saew.storage.versions`): every partition's current immutable data file in the version
store, by paths relative to the home. A command:

* stages its files under ``<home>/.staging/<run_id>/`` (its writes, partition deletes, row
  deletes and folders such as SAELens SAE folders);
* commits them as one unit (``commit_unit(name)`` for each layer or pair of a per-layer step,
  and once more at the end of the transaction): the staged files move into the version store
  and one ``os.replace`` switches the manifest. That is the commit point; a kill before it
  leaves the lake as it was (the staging is garbage the next writer deletes), a kill after it
  leaves the unit committed, and what follows (links, :mod:`saew.storage.links`; the catalog)
  is idempotent and redone on the next open by anyone.

Readers (``connect``, ``query``, the catalog's views, dbt) read the explicit files of one
manifest, so they see each unit all or none, and never fail because a write is under way
(superseded files are kept for a grace time); they take no lock, writers ``.write.lock``.
That is the default Parquet engine; a home whose ``saew.toml`` names DuckLake hands the same
calls to ``Lake.engine`` (:mod:`saew.storage.ducklake`: one unit, one snapshot).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from saew.errors import BadInput, LockBusy
from saew.storage import config, ducklake_ops, legacy, links, resume, versions
from saew.storage.resume import RESUME_IGNORED, resume_key
from saew.storage.home import check_release, resolve_home
from saew.storage.arrowcols import float_lists, list_matrix, row_group_size, to_arrow
from saew.storage.schemas import TABLES, parse_key as _parse_key, spec
from saew.storage.versions import PART_FILE, Manifest

__all__ = ["Lake", "RunInfo", "check_release", "resolve_home", "float_lists", "list_matrix",
           "to_arrow", "PART_FILE", "COMPRESSION", "resume_key", "RESUME_IGNORED"]

_PART_VALUE_RE = re.compile(r"-?[A-Za-z0-9][A-Za-z0-9._-]{0,99}|-?[0-9]+")
_DIR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
COMPRESSION = "zstd"
@dataclass(frozen=True)
class RunInfo:
    """The ``runs`` row of a writing command, written with each of its units; with ``of_run``
    (a Ray task committing one unit of that run on DuckLake) no row: the driver writes it."""
    command: str
    params: str          # JSON
    version: str
    started_at: datetime
    of_run: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Lake:
    def __init__(self, home: str | os.PathLike | None = None):
        self.home = resolve_home(home)
        self.root = self.home / "lake"
        self._staging: Path | None = None
        self._unit = versions.Unit()
        self._rewrites: set[Path] = set()   # staged files that are old partitions minus rows
        self._seq = 0
        self._run: RunInfo | None = None
        self._run_id: str | None = None
        self._units: list[str] = []
        self._behind = False   # a unit committed since the last catalog refresh
        self.notes: list[str] = []   # lines a step wants printed (e.g. what a re-ingest dropped)
        self.after_commit: Callable[["Lake"], None] | None = None  # e.g. the catalog refresh
        self.config = config.read(self.home)   # saew.toml; engine None: the Parquet lake
        self.engine = ducklake_ops.engine(self.home, self.config)

    # ------------------------------------------------------------------ paths
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_key(self, table: str, **part) -> str:
        """``<table>/<col>=<v>/...``: a partition's key in the manifest (and its folder)."""
        t = spec(table)
        part = {**dict(getattr(t, "partition_defaults", ())), **part}  # trailing columns a write may leave out
        missing = [c for c in t.partition_by if c not in part]
        extra = [c for c in part if c not in t.partition_by]
        if missing or extra:
            raise ValueError(f"{table}: partition needs {t.partition_by}, got {sorted(part)}")
        return "/".join([table, *(_part(c, part[c]) for c in t.partition_by)])

    def partition_dir(self, table: str, **part) -> Path:
        return self.root / self.partition_key(table, **part)

    def manifest(self) -> Manifest:
        """The current manifest (on a DuckLake home: snapshot, with ``version``, ``table_files``)."""
        if self.engine is not None:
            return self.engine.snapshot()  # type: ignore[return-value]
        return versions.read(self.home)

    def snapshot(self, at: int | None = None):
        """The DuckLake snapshot ``at`` (the current one by default); BadInput on a Parquet home."""
        return ducklake_ops.need(self, "--at").snapshot(at)

    def snapshots(self) -> pa.Table:
        """(snapshot_id, snapshot_time, command, run_id) of a DuckLake home; BadInput on a Parquet home."""
        return ducklake_ops.need(self, "saew snapshots").snapshots()

    # ------------------------------------------------------------------ locking and recovery
    @contextmanager
    def write_lock(self, timeout: float | None = None, release: str | None = None) -> Iterator[None]:
        """Exclusive writer lock; waits for another writer (or raises LockBusy after timeout).
        Per ``release`` on a DuckLake home (``locks.home_lock``), else the whole home."""
        from filelock import FileLock, Timeout

        self.home.mkdir(parents=True, exist_ok=True)
        if timeout is None:
            timeout = float(os.environ.get("SAEW_LOCK_TIMEOUT", "3600"))
        if self.engine is not None:
            with ducklake_ops.write_lock(self, release, timeout):
                yield
            return
        lock = FileLock(str(self.home / ".write.lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise LockBusy(f"{self.home}: another saew command is writing; try again when it ends") from None
        try:
            self.recover()
            yield
        finally:
            lock.release()

    def recover(self, whole: bool = True) -> None:
        """A writer's open: finish what a killed command left (links, folders), drop its
        staging and the version files no manifest names once past the grace time."""
        if self.engine is not None:
            return ducklake_ops.recover(self, whole)
        legacy.roll_forward_journal(self.home)
        self.open(wait=30)
        shutil.rmtree(self.home / ".staging", ignore_errors=True)
        for d in (self.home / "saes").glob("*/.staging-*"):   # train's staging before units
            shutil.rmtree(d, ignore_errors=True)
        try:
            versions.clean_tmp(self.home)
            versions.sweep(self.home)
        except OSError:
            pass

    def open(self, wait: float = 0.0) -> Manifest:
        """A reader's open (anyone may run it): migrate a pre-manifest home, and redo the
        table folders' links if a kill interrupted them (skipped if another process is at it)."""
        if self.engine is not None:
            return ducklake_ops.open_snapshot(self, wait)
        if not (self.home / versions.MANIFEST).exists() and self.root.exists():
            try:
                versions.migrate(self.home, legacy.place)
            except OSError:
                pass
        try:
            links.sync(self.home, wait=wait)
        except OSError:
            pass  # e.g. a read-only home: readers read the manifest's files anyway
        return self.manifest()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self, run_id: str | None = None, run: RunInfo | None = None) -> Iterator["Lake"]:
        """Stage every write; commit what is staged at each ``commit_unit`` and at the end.
        If the body raises, what was staged since the last unit is dropped (earlier units stay)."""
        if self._staging is not None:
            yield self  # nested: the outer transaction commits
            return
        self._run_id = run_id or uuid.uuid4().hex
        self._staging = self.home / ".staging" / self._run_id
        self._unit, self._units, self._run, self._rewrites = versions.Unit(), [], run, set()
        self._behind = False
        try:
            yield self
            self._commit(final=True)
        finally:
            if self._staging.exists():
                shutil.rmtree(self._staging, ignore_errors=True)
            self._staging, self._unit, self._run, self._run_id = None, versions.Unit(), None, None

    def commit_unit(self, unit: str) -> None:
        """Commit everything staged since the transaction began (or the previous unit) as ONE
        atomic unit named ``unit`` (e.g. ``layer=3``, ``pair=3-4``); the transaction stays open."""
        if self._staging is None:
            raise RuntimeError("commit_unit outside a transaction")
        self._units.append(str(unit))
        self._commit(final=False)

    def _commit(self, final: bool) -> None:
        if self._run is not None and self._run.of_run is None:
            r = self._run
            self.write("runs", {
                "command": [r.command], "params": [r.params], "started_at": [r.started_at],
                "finished_at": [_now()], "status": ["ok" if final else "partial"],
                "version": [r.version], "units": [list(self._units)]}, run_id=self._run_id)
        if self._unit:
            self._seq += 1
            unit, self._unit, self._rewrites = self._unit, versions.Unit(), set()
            if self.engine is not None:
                ducklake_ops.commit_unit(self, unit, f"{self._run_id}-{self._seq}")
            else:
                m = versions.commit(self.home, unit, f"{self._run_id}-{self._seq}")
                self._sync(m, unit)
            self._behind = True
        if final and self._behind:
            self._behind = False
            self._after_commit()

    def _sync(self, m: Manifest, unit: versions.Unit) -> None:
        """The table folders' links after a commit: only what the unit changed when the
        links were in sync before it, else the whole tree (idempotent; redone on any open)."""
        try:
            links.sync_unit(self.home, m, unit) or links.sync(self.home, wait=10)
        except OSError:
            pass

    def _after_commit(self) -> None:
        """The catalog refresh, after the transaction's last commit only (a reader rebuilds a
        catalog behind the manifest on its own open; so does a failure here)."""
        if self.after_commit is not None:
            try:
                self.after_commit(self)
            except Exception:  # noqa: BLE001 - the unit is committed; the catalog catches up later
                pass

    def finished_units(self, command: str, params_key: str) -> set[str]:
        """Units that earlier runs of ``command`` with this ``resume_key`` finished and nothing
        has changed since: the units of the latest unbroken chain of its killed or failed
        ('partial') runs, back to its last complete run or any other command's run."""
        if not self.has_data("runs"):
            return set()
        rows = self.query("SELECT run_id, command, params, status, units FROM runs "
                          "ORDER BY finished_at DESC, run_id DESC").to_pylist()
        return resume.finished_units(rows, self._run_id, command, params_key)

    # ------------------------------------------------------------------ writing
    def _stage_path(self, key: str, name: str) -> Path:
        """A fresh staging path ``<seq>/<key>/<name>`` (a staged file keeps its Hive columns)."""
        assert self._staging is not None
        self._seq += 1
        p = self._staging / f"{self._seq:06d}" / key / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, table: str, data: pa.Table | Mapping[str, object], **part) -> Path:
        """Replace one partition of ``table`` with ``data`` (columns without the partition ones).

        ``data`` may hold the partition columns too; they must then equal ``part``.
        Inside a transaction the file is staged; outside, it is committed at once. Leaving out
        a defaulted trailing partition column (``TableSpec.partition_defaults``, e.g. an
        activations layer without ``shard``) writes the whole slice: its other partitions go.
        """
        t = spec(table)
        key = self.partition_key(table, **part)
        whole = [c for c, _ in getattr(t, "partition_defaults", ()) if c not in part]
        arrow = to_arrow(t, data, part)
        if self._staging is None:
            with self.transaction():
                return self.write(table, arrow, **part)
        staged = self._stage_path(key, PART_FILE)
        pq.write_table(arrow, staged, compression=COMPRESSION, row_group_size=row_group_size(arrow))
        versions.chaos("stage")
        if whole:
            self._unit.delete(key.rsplit("/", len(whole))[0])
        self._unit.put(key, staged)
        return self.root / key / PART_FILE

    def delete_partition(self, table: str, **part) -> None:
        """Remove the partitions under the given leading partition values (at commit)."""
        t = spec(table)
        key = [table]
        for col in t.partition_by:
            if col not in part:
                break
            key.append(_part(col, part[col]))
        if self._staging is None:
            with self.transaction():
                self.delete_partition(table, **part)
            return
        self._unit.delete("/".join(key))

    def delete_rows(self, table: str, where: str, params: list | None = None) -> int:
        """Stage the removal of the rows of ``table`` matching ``where`` (SQL over its columns,
        ``$1``-style parameters) from its committed partitions (and from partitions an earlier
        ``delete_rows`` of this unit rewrote): each partition holding some is rewritten without
        them, or removed when none is left. Partitions this unit wrote are new data and are left
        alone. Returns the number of rows dropped."""
        t = spec(table)
        if self.engine is not None:
            return ducklake_ops.delete_rows(self, t, where, params)
        cur = {k: (self._abs(v), True) for k, v in self.manifest().files.items() if k.startswith(table + "/")}
        for op, key, staged in self._unit.ops:
            if op == "put" and key.startswith(table + "/"):
                cur[key] = (str(staged), staged in self._rewrites)
            elif op == "delete":
                for k in [k for k in cur if k == key or k.startswith(key + "/")]:
                    del cur[k]
        by_file = {path: key for key, (path, old) in cur.items() if old}
        if not by_file:
            return 0
        con = duckdb.connect()
        try:
            hit = con.execute(
                f"SELECT filename, count(*) FROM ({self._scan(t, list(by_file), filename=True)}) "
                f"WHERE {where} GROUP BY filename", params or None).fetchall()
            dropped = 0
            for fname, n in hit:
                key = by_file[fname]
                keep = con.execute(f"SELECT * EXCLUDE (filename) FROM ({self._scan(t, [fname], filename=True)}) "
                                   f"WHERE NOT coalesce(({where}), false)", params or None).to_arrow_table()
                if keep.num_rows:
                    self.write(table, keep, **_parse_key(t, key))
                    self._rewrites.add(self._unit.ops[-1][2])
                else:
                    self._unit.delete(key)
                dropped += int(n)
            return dropped
        finally:
            con.close()

    def stage_dir(self, rel: str) -> Path:
        """An empty staging folder that becomes ``<home>/<rel>`` (e.g. an SAELens SAE folder,
        ``saes/<release>/<hook>``) atomically with the unit's other writes."""
        if self._staging is None:
            raise RuntimeError("stage_dir outside a transaction")
        if not _DIR_RE.fullmatch(rel) or rel.split("/")[0] in {"lake", versions.VERSIONS, ".staging"}:
            raise BadInput(f"{rel!r}: not a folder name a unit may write")
        d = self._stage_path("dir", "folder")
        d.mkdir()
        self._unit.put_dir(rel, d)
        return d

    # ------------------------------------------------------------------ reading
    def _abs(self, rel: str) -> str:
        return (self.home / rel).as_posix()

    def has_data(self, table: str) -> bool:
        return bool(self.manifest().table_files(table))

    def _scan(self, t, files: list[str], filename: bool = False) -> str:
        cols = ", ".join(f'CAST("{f.name}" AS {t.duckdb_type(f.name)}) AS "{f.name}"' for f in t.schema)
        lst = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        types = ", ".join(f"'{c}': '{t.duckdb_type(c)}'" for c in t.partition_by)
        return (f"SELECT {cols}{', filename' if filename else ''} FROM read_parquet([{lst}], "
                f"hive_partitioning = true, hive_types = {{{types}}}, union_by_name = true"
                f"{', filename = true' if filename else ''})")

    def scan_sql(self, table: str, manifest: Manifest | None = None) -> str:
        """A SQL expression selecting the table with its contract columns, in order, from the
        explicit data files of one manifest (the current one by default). An empty table becomes
        a typed zero-row SELECT, so views and dbt sources always exist."""
        t = spec(table)
        m = manifest or self.manifest()
        files = m.table_files(table)
        if not files:
            nulls = ", ".join(f'CAST(NULL AS {t.duckdb_type(f.name)}) AS "{f.name}"' for f in t.schema)
            return f"SELECT {nulls} WHERE 1 = 0"
        if self.engine is not None:
            return ducklake_ops.scan_sql(t, files, m.delete_files(table))  # type: ignore[attr-defined]
        return self._scan(t, [self._abs(f) for f in files])

    def connect(self, tables=None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per lake table (or per table of
        ``tables``), all from one manifest; never locks the catalog."""
        m = self.open()
        names = list(TABLES if tables is None else tables)
        if hasattr(m, "prefetch"):
            m.prefetch(names)   # a DuckLake snapshot: one listing query for all of them
        con = duckdb.connect()
        for name in names:
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {self.scan_sql(name, m)}')
        return con

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run one SQL statement over views of the lake tables it names; an Arrow table."""
        con = self.connect([n for n in TABLES if re.search(rf"\b{n}\b", sql)])
        try:
            # execute: duckdb 1.5.5's sql(params=) prunes no partition (2.0 vs 0.05 s a query)
            return con.execute(sql, params or None).to_arrow_table()
        finally:
            con.close()


def _part(col: str, value) -> str:
    v = str(value)
    if not _PART_VALUE_RE.fullmatch(v):
        raise BadInput(f"{col}={v!r}: not a valid partition value")
    return f"{col}={v}"
