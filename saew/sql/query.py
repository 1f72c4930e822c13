"""``saew query`` (SQL on the catalog) and ``saew export`` (marts as Parquet).

``saew query`` is read-only: the catalog is opened read-only and every statement is checked
by DuckDB's parser first (``sql.readonly``); ``--allow-write`` lets COPY, ATTACH, CREATE and
the rest run, but never on a path inside the home. Exit 2 is for the user's SQL only: a read
that fails because a write is under way (a Parquet file replaced while it was read, the catalog
busy while ``dbt build`` rewrites the marts) is retried on a fresh connection, ``RETRIES``
times with a doubling pause from ``RETRY_WAIT`` s; if the lake keeps changing, exit 3 as for a
busy warehouse.
"""
from __future__ import annotations

import time
from pathlib import Path

import duckdb

from saew.storage import catalog
from saew.errors import BadInput, LockBusy
from saew.sql import readonly
from saew.sql.render import render

RETRIES = 6
RETRY_WAIT = 0.05
# messages of reads that failed because a file changed under them, not because of the SQL
_TORN = ("could not read enough bytes", "don't know what type", "no magic bytes",
         "too small to be a parquet file")


def add_arguments_query(p) -> None:
    p.add_argument("sql", metavar="SQL_OR_FILE", help="a SQL statement, or a path to a .sql file")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="output format (default table)")
    p.add_argument("--out", default=None, help="output file (required for --format parquet)")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown in table format")
    p.add_argument("--at", type=int, default=None, metavar="SNAPSHOT",
                   help="DuckLake homes: read the lake tables as they were at this snapshot (see saew "
                        "snapshots); the dbt models (staging views, marts) are the current ones")
    p.add_argument("--allow-write", action="store_true",
                   help="let COPY, ATTACH, CREATE, INSTALL, ... run (never on files inside the home)")


def add_arguments_export(p) -> None:
    p.add_argument("--out", required=True, help="directory to write <model>.parquet files into")
    p.add_argument("--all", action="store_true", help="also export staging/intermediate models")


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:  # a statement too long to be a file name
        return False


def _read_sql(text: str) -> str:
    """SQL_OR_FILE: a path ending in .sql (or naming an existing file) is read; else the text is SQL."""
    p = Path(text)
    if text.endswith(".sql") or ("\n" not in text and _is_file(p)):
        if not _is_file(p):
            raise BadInput(f"{text}: no such SQL file")
        try:
            return p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{text}: cannot read the SQL file ({type(e).__name__})") from None
    return text


def _transient(e: duckdb.Error, fallback: bool, home: Path) -> bool:
    """Whether a failed read may be a write under way (retry) rather than the user's SQL: an
    I/O or torn-Parquet error on a file of the home, or a missing table while the catalog is
    busy (``dbt build`` rewriting the marts; the connection fell back to the lake's views)."""
    msg = str(e).lower()
    if isinstance(e, (duckdb.IOException, duckdb.InvalidInputException, duckdb.InternalException)):
        return str(home).lower() in msg or any(s in msg for s in _TORN)
    return fallback and isinstance(e, duckdb.CatalogException)


def _once(ctx, sql: str, fmt: str, max_rows: int, at: int | None = None):
    """Run the statements once on a fresh read-only connection; (result, fell back to the lake)."""
    con = catalog.connect(ctx.lake, read_only=True) if at is None else catalog.connect_at(ctx.lake, at)
    try:
        fallback = con.execute("SELECT current_database()").fetchall()[0][0] == "memory"
        try:
            rel = con.sql(sql)
            if rel is None:
                return None, fallback
            return (rel.to_arrow_table() if fmt == "parquet" else render(rel, fmt, max_rows)), fallback
        except duckdb.Error as e:
            e.saew_fallback = fallback  # type: ignore[attr-defined]
            raise
    finally:
        con.close()


def run_query(args, ctx) -> str | None:
    sql = _read_sql(args.sql)
    home = ctx.lake.home
    readonly.check(sql, allow_write=getattr(args, "allow_write", False), home=home)
    if args.format == "parquet" and not args.out:
        raise BadInput("--format parquet needs --out FILE")
    if args.out and readonly.owned(args.out, home):
        raise BadInput(f"--out {args.out}: inside the home's own files ({home}: lake/, saes/, reports/, "
                       f"saew.duckdb, dot-folders); saew query never writes them")
    at = getattr(args, "at", None)
    if at is not None:
        ctx.lake.snapshot(at)   # a Parquet home, or no such snapshot: one line, exit 2
    for attempt in range(RETRIES + 1):
        try:
            out, _ = _once(ctx, sql, args.format, args.max_rows, at)
            break
        except duckdb.Error as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not _transient(e, getattr(e, "saew_fallback", False), home):
                raise BadInput(f"query: {first}") from None
            if attempt == RETRIES:
                if str(home).lower() not in str(e).lower():
                    raise BadInput(f"query: {first}") from None
                raise LockBusy(f"query: the lake kept changing while it was read ({first}); "
                               f"try again") from None
            time.sleep(RETRY_WAIT * 2 ** attempt)
    if out is None:
        return None
    if args.format == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(out, args.out, compression="zstd")
        return f"wrote {args.out}"
    return out


def run_export(args, ctx) -> str:
    """Write every mart (``fct_*``/``dim_*`` tables of the catalog; with ``--all`` also the
    staging views and intermediate tables) as ``<out>/<name>.parquet`` (zstd), streamed by
    DuckDB and renamed into place, so a reader never sees half a file."""
    import os

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
    if readonly.owned(out, ctx.lake.home):
        raise BadInput(f"--out {out}: inside the warehouse's own files under {ctx.lake.home} (lake/, saes/, "
                       f"reports/, saew.duckdb, dot-folders); choose another folder")
    con = catalog.connect(ctx.lake, read_only=True)
    try:
        if args.all:
            like = "AND (table_name LIKE 'stg_%' OR table_name LIKE 'int_%' OR table_name LIKE 'fct_%' " \
                   "OR table_name LIKE 'dim_%')"
        else:
            like = "AND table_type = 'BASE TABLE' AND (table_name LIKE 'fct_%' OR table_name LIKE 'dim_%')"
        names = [r[0] for r in con.execute(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' {like} "
            f"ORDER BY 1").fetchall()]
        if not names:
            raise BadInput(f"{ctx.lake.home}: no marts to export; run `saew build` first")
        out.mkdir(parents=True, exist_ok=True)
        for n in names:
            tmp = out / f".{n}.parquet.tmp"
            path = str(tmp).replace("'", "''")
            try:
                con.execute(f'COPY (SELECT * FROM main."{n}") TO \'{path}\' (FORMAT parquet, COMPRESSION zstd)')
            except duckdb.Error as e:
                tmp.unlink(missing_ok=True)
                raise BadInput(f"export {n}: {str(e).splitlines()[0]}") from None
            os.replace(tmp, out / f"{n}.parquet")
        return f"exported {len(names)} tables to {out}: {', '.join(names)}"
    finally:
        con.close()
