"""The lake: Hive-partitioned Parquet tables under ``<home>/lake``.

Writes are staged and committed atomically:

* every write of a command goes to ``<home>/.staging/<run_id>/`` first;
* on commit a journal (the list of renames) is written atomically, then each staged
  file is ``os.replace``-d onto its partition file (``part-0.parquet``, one file per
  partition, so each replacement is atomic for readers), then the journal is removed;
* a command killed before its journal exists leaves only staging garbage, which the next
  writer deletes; one killed while committing is rolled forward by the next writer.

So a reader sees each partition either as it was or as it is after the command, never
half-written, and a failed command leaves the lake as it was.
A writer lock (``<home>/.write.lock``) keeps two writing commands from interleaving;
readers take no lock.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from saew.errors import BadInput, LockBusy
from saew.storage.schemas import TABLES, TableSpec, spec

RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PART_VALUE_RE = re.compile(r"-?[A-Za-z0-9][A-Za-z0-9._-]{0,99}|-?[0-9]+")
PART_FILE = "part-0.parquet"
COMPRESSION = "zstd"
DEFAULT_HOME = "saew-home"  # relative to the working directory; never a source folder


def check_release(release: str) -> str:
    """Refuse release names that are not ``[A-Za-z0-9][A-Za-z0-9._-]{0,99}``."""
    if not isinstance(release, str) or not RELEASE_RE.fullmatch(release) or release in {".", ".."}:
        raise BadInput(f"--release {release!r}: release names must match [A-Za-z0-9][A-Za-z0-9._-]{{0,99}}")
    return release


def resolve_home(home: str | os.PathLike | None) -> Path:
    """``--home``, else ``$SAEW_HOME``, else ``./saew-home`` (never a source folder)."""
    return Path(home or os.environ.get("SAEW_HOME") or DEFAULT_HOME).resolve()


class Lake:
    def __init__(self, home: str | os.PathLike | None = None):
        self.home = resolve_home(home)
        self.root = self.home / "lake"
        self._staging: Path | None = None
        self._staged: list[tuple[Path, Path]] = []
        self._deletes: list[Path] = []

    # ------------------------------------------------------------------ paths
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, table: str, **part) -> Path:
        t = spec(table)
        missing = [c for c in t.partition_by if c not in part]
        extra = [c for c in part if c not in t.partition_by]
        if missing or extra:
            raise ValueError(f"{table}: partition needs {t.partition_by}, got {sorted(part)}")
        d = self.table_dir(table)
        for col in t.partition_by:
            v = str(part[col])
            if not _PART_VALUE_RE.fullmatch(v):
                raise BadInput(f"{col}={v!r}: not a valid partition value")
            d = d / f"{col}={v}"
        return d

    # ------------------------------------------------------------------ locking
    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Exclusive writer lock; waits for another writer (or raises LockBusy after timeout)."""
        from filelock import FileLock, Timeout

        self.home.mkdir(parents=True, exist_ok=True)
        if timeout is None:
            timeout = float(os.environ.get("SAEW_LOCK_TIMEOUT", "3600"))
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

    def recover(self) -> None:
        """Roll forward a committed-but-interrupted journal; drop abandoned staging."""
        journal = self.home / ".journal.json"
        if journal.exists():
            ops = json.loads(journal.read_text())
            self._apply(ops)
            journal.unlink()
        staging = self.home / ".staging"
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self, run_id: str | None = None) -> Iterator["Lake"]:
        """Stage every write; commit them all at the end, or none if the body raises."""
        if self._staging is not None:
            yield self  # nested: the outer transaction commits
            return
        run_id = run_id or uuid.uuid4().hex
        self._staging = self.home / ".staging" / run_id
        self._staged, self._deletes = [], []
        try:
            yield self
            self._commit()
        finally:
            if self._staging is not None and self._staging.exists():
                shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
            self._staged, self._deletes = [], []

    def _commit(self) -> None:
        ops = [{"op": "replace", "src": str(s), "dst": str(d)} for s, d in self._staged]
        ops += [{"op": "delete", "path": str(p)} for p in self._deletes]
        if not ops:
            return
        journal = self.home / ".journal.json"
        tmp = journal.with_suffix(".tmp")
        tmp.write_text(json.dumps(ops))
        os.replace(tmp, journal)
        self._apply(ops)
        journal.unlink()

    @staticmethod
    def _apply(ops: list[dict]) -> None:
        for op in ops:
            if op["op"] == "replace":
                src, dst = Path(op["src"]), Path(op["dst"])
                if src.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
            elif op["op"] == "delete":
                p = Path(op["path"])
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()

    # ------------------------------------------------------------------ writing
    def write(self, table: str, data: pa.Table | Mapping[str, object], **part) -> Path:
        """Replace one partition of ``table`` with ``data`` (columns without the partition ones).

        ``data`` may hold the partition columns too; they must then equal ``part``.
        Inside a transaction the file is staged; outside, it is committed at once.
        """
        t = spec(table)
        target = self.partition_dir(table, **part) / PART_FILE
        arrow = to_arrow(t, data, part)
        if self._staging is None:
            with self.transaction():
                return self.write(table, arrow, **part)
        staged = self._staging / target.relative_to(self.home)
        staged.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow, staged, compression=COMPRESSION, row_group_size=_row_group_size(arrow))
        self._staged = [(s, d) for s, d in self._staged if d != target] + [(staged, target)]
        return target

    def delete_partition(self, table: str, **part) -> None:
        """Remove the partitions under the given leading partition values (at commit)."""
        t = spec(table)
        d = self.table_dir(table)
        for col in t.partition_by:
            if col not in part:
                break
            d = d / f"{col}={part[col]}"
        if self._staging is None:
            with self.transaction():
                self.delete_partition(table, **part)
            return
        self._deletes.append(d)

    # ------------------------------------------------------------------ reading
    def has_data(self, table: str) -> bool:
        d = self.table_dir(table)
        return d.exists() and any(d.rglob(PART_FILE))

    def scan_sql(self, table: str) -> str:
        """A SQL expression selecting the table with its contract columns, in order.

        An empty table becomes a typed zero-row SELECT, so views and dbt sources always exist.
        """
        t = spec(table)
        cols = ", ".join(f'CAST("{f.name}" AS {t.duckdb_type(f.name)}) AS "{f.name}"' for f in t.schema)
        if not self.has_data(table):
            nulls = ", ".join(f'CAST(NULL AS {t.duckdb_type(f.name)}) AS "{f.name}"' for f in t.schema)
            return f"SELECT {nulls} WHERE 1 = 0"
        glob = (self.table_dir(table) / ("*/" * len(t.partition_by)) / PART_FILE).as_posix()
        types = ", ".join(f"'{c}': '{t.duckdb_type(c)}'" for c in t.partition_by)
        return (f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning = true, "
                f"hive_types = {{{types}}}, union_by_name = true)")

    def connect(self, tables=None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per lake table (or per table of
        ``tables``); never locks the catalog."""
        con = duckdb.connect()
        for name in TABLES if tables is None else tables:
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {self.scan_sql(name)}')
        return con

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run one SQL statement over views of the lake tables it names; an Arrow table."""
        con = self.connect([n for n in TABLES if re.search(rf"\b{n}\b", sql)])
        try:
            return con.sql(sql, params=params or None).to_arrow_table()
        finally:
            con.close()


def _row_group_size(t: pa.Table) -> int:
    if t.num_rows == 0:
        return 1
    per_row = max(1, t.nbytes // t.num_rows)
    return int(max(1024, min(1_000_000, (64 << 20) // per_row)))


def to_arrow(t: TableSpec, data: pa.Table | Mapping[str, object], part: Mapping[str, object]) -> pa.Table:
    """Cast ``data`` to the table's file schema; check partition columns if present."""
    if isinstance(data, pa.Table):
        cols = {n: data.column(n) for n in data.column_names}
    else:
        cols = dict(data)
    for c in t.partition_by:
        if c in cols:
            col = cols.pop(c)
            vals = set(pa.chunked_array([col]).to_pylist() if not isinstance(col, (list, tuple)) else col) \
                if not _is_scalar(col) else {col}
            if vals and vals != {part[c]}:
                raise ValueError(f"{t.name}: column {c} holds {sorted(map(str, vals))[:3]}, partition is {part[c]!r}")
    schema = t.data_schema
    missing = [f.name for f in schema if f.name not in cols]
    if missing:
        raise ValueError(f"{t.name}: missing columns {missing}")
    arrays = [_as_array(cols[f.name], f.type) for f in schema]
    n = {len(a) for a in arrays}
    if len(n) > 1:
        raise ValueError(f"{t.name}: columns of different lengths {n}")
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_scalar(x) -> bool:
    return isinstance(x, (str, int, float)) or x is None


def _as_array(col, typ: pa.DataType):
    import numpy as np

    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col.cast(typ) if col.type != typ else col
    if pa.types.is_list(typ) and isinstance(col, np.ndarray) and col.ndim == 2:
        return float_lists(col)
    if isinstance(col, np.ndarray):
        return pa.array(col).cast(typ)
    return pa.array(col, type=typ)


def float_lists(m) -> pa.ListArray:
    """A 2-D array as a list<float32> column, one row per matrix row (no per-row Python)."""
    import numpy as np

    m = np.ascontiguousarray(m, dtype=np.float32)
    n, d = m.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(m.reshape(-1)))


def list_matrix(col: pa.ChunkedArray | pa.Array, width: int | None = None):
    """A list<float> column back to a dense float32 matrix (rows must have equal length)."""
    import numpy as np

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(col)
    if n == 0:
        return np.zeros((0, width or 0), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, -1)
