"""The Lake's operations on a DuckLake home (``Lake.engine`` set): a unit's commit, row deletes
and the readers' scan of one snapshot. See :mod:`saew.storage.ducklake` for the design."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from saew.errors import BadInput
from saew.storage import links, locks, versions
from saew.storage.schemas import TableSpec, parse_key, spec


def engine(home: Path, cfg):
    """The DuckLake engine of a home whose config names it, else None (the Parquet lake)."""
    if not cfg.is_ducklake:
        return None
    from saew.storage.ducklake import DuckLake

    return DuckLake(home, cfg)


def need(lake, what: str):
    """The lake's DuckLake engine; BadInput (one line) on a Parquet home."""
    if lake.engine is None:
        raise BadInput(f"{what}: needs a DuckLake home ({lake.home} is a Parquet lake; "
                       f"see saew init --lake ducklake)")
    return lake.engine


@contextmanager
def write_lock(lake, release: str | None, timeout: float) -> Iterator[None]:
    """The per-release writer lock (``locks.home_lock``), then the writer's open."""
    slice_ = locks.slice_name(release)
    with locks.home_lock(lake.home, slice_, timeout):
        recover(lake, whole=slice_ is None)
        yield


def recover(lake, whole: bool) -> None:
    """A writer's open: create missing tables; drop killed writers' staging and unnamed folder
    versions only under the whole-home lock (other releases' writers may be staging)."""
    lake.engine.ensure_tables()
    open_snapshot(lake, wait=30)
    if whole:
        shutil.rmtree(lake.home / ".staging", ignore_errors=True)
        try:
            versions.clean_tmp(lake.home)
            versions.sweep(lake.home)
        except OSError:
            pass


def open_snapshot(lake, wait: float = 0.0):
    """A reader's open: redo the SAE folders' symlinks if a kill interrupted them; the current snapshot."""
    try:
        links.sync(lake.home, wait=wait)
    except OSError:
        pass
    return lake.engine.snapshot()


def lit(v) -> str:
    """A SQL literal of an int or a string."""
    return str(int(v)) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'"


def lit_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in paths) + "]"


def scan_sql(t: TableSpec, files: list[str], deletes: list[tuple[str, str]]) -> str:
    """A DuckLake snapshot's table from its data files (partition columns are inside them),
    minus the rows its delete files name (none, unless another tool deleted rows)."""
    cols = ", ".join(f'CAST("{f.name}" AS {t.duckdb_type(f.name)}) AS "{f.name}"' for f in t.schema)
    if not deletes:
        return f"SELECT {cols} FROM read_parquet({lit_list(files)}, union_by_name = true, hive_partitioning = false)"
    dels = sorted({d for _, d in deletes})
    return (f"SELECT {cols} FROM read_parquet({lit_list(files)}, union_by_name = true, hive_partitioning = false, filename = true, "
            f"file_row_number = true) AS d ANTI JOIN read_parquet({lit_list(dels)}) AS x "
            f"ON x.file_path = d.filename AND x.pos = d.file_row_number")


def commit_unit(lake, unit: versions.Unit, unit_id: str) -> None:
    """Folders first (the file-based version store), then the tables in ONE DuckLake
    transaction: the prefix deletes of the unit, then its last put of each partition."""
    dirs = versions.Unit([op for op in unit.ops if op[0] == "dir"])
    if dirs:
        versions.commit(lake.home, dirs, unit_id)
    puts: dict[str, Path] = {}
    deletes: list[str] = []
    for op, key, staged in unit.ops:
        if op == "put":
            puts[key] = staged  # type: ignore[assignment]
        elif op == "delete":
            for k in [k for k in puts if k == key or k.startswith(key + "/")]:
                del puts[k]
            deletes.append(key)
    command = lake._run.command if lake._run is not None else "write"
    if puts or deletes:
        lake.engine.commit(  # type: ignore[union-attr]
            [(spec(k.split("/")[0]), parse_key(spec(k.split("/")[0]), k)) for k in deletes],
            [(spec(k.split("/")[0]), parse_key(spec(k.split("/")[0]), k), p) for k, p in puts.items()],
            command, _extra(lake))
    if dirs:
        try:
            links.sync(lake.home, wait=10)   # the folders' symlinks (redone on any open)
        except OSError:
            pass


def _extra(lake) -> dict:
    """The snapshot's ``extra_info``: the run and its units so far; ``task`` when a Ray task
    committed it for the driver's run (``compute.units.commit_in_task``)."""
    of_run = getattr(lake._run, "of_run", None)
    return {"run_id": of_run or lake._run_id, "units": list(lake._units), **({"task": True} if of_run else {})}


def delete_rows(lake, t: TableSpec, where: str, params: list | None) -> int:
    """``delete_rows`` on DuckLake: the same partitions as on Parquet are rewritten (the
    partition re-put without the rows), so no DuckLake delete files ever appear."""
    pcols = list(t.partition_by)
    staged: dict[str, tuple[Path | None, bool]] = {}   # key -> (staged file or None, a rewrite)
    dropped_prefixes: list[str] = []
    for op, key, p in lake._unit.ops:
        if not key.startswith(t.name + "/"):
            continue
        if op == "put":
            staged[key] = (p, p in lake._rewrites)
        elif op == "delete":
            for k in [k for k in staged if k == key or k.startswith(key + "/")]:
                staged[k] = (None, False)
            dropped_prefixes.append(key)
    sources: list[tuple[str, str]] = []   # (key, SQL of its rows)
    committed = lake.scan_sql(t.name)
    con = duckdb.connect()
    try:
        cols = ", ".join(f'"{c}"' for c in pcols)
        for vals in con.execute(f"SELECT DISTINCT {cols} FROM ({committed}) WHERE {where}",
                                params or None).fetchall():
            key = lake.partition_key(t.name, **dict(zip(pcols, vals)))
            if key in staged or any(key == d or key.startswith(d + "/") for d in dropped_prefixes):
                continue
            w = " AND ".join(f'"{c}" = {lit(v)}' for c, v in zip(pcols, vals))
            sources.append((key, f"SELECT * FROM ({committed}) WHERE {w}"))
        for key, (p, rewrite) in staged.items():
            if p is not None and rewrite:
                part = parse_key(t, key)
                consts = ", ".join(f'{lit(v)} AS "{c}"' for c, v in part.items())
                sources.append((key, f"SELECT *, {consts} FROM read_parquet({lit(str(p))}, hive_partitioning = false)"))
        dropped = 0
        for key, src in sources:
            n = con.execute(f"SELECT count(*) FROM ({src}) WHERE {where}", params or None).fetchone()[0]
            if not n:
                continue
            keep = con.execute(f"SELECT * FROM ({src}) WHERE NOT coalesce(({where}), false)",
                               params or None).to_arrow_table()
            if keep.num_rows:
                lake.write(t.name, keep, **parse_key(t, key))
                lake._rewrites.add(lake._unit.ops[-1][2])
            else:
                lake._unit.delete(key)
            dropped += int(n)
        return dropped
    finally:
        con.close()
