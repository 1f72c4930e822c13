"""``saew query`` (SQL on the catalog) and ``saew export`` (marts as Parquet)."""
from __future__ import annotations

import sys
from pathlib import Path

import duckdb

from saew.storage import catalog
from saew.errors import BadInput
from saew.sql.render import render


def add_arguments_query(p) -> None:
    p.add_argument("sql", metavar="SQL_OR_FILE", help="a SQL statement, or a path to a .sql file")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="output format (default table)")
    p.add_argument("--out", default=None, help="output file (required for --format parquet)")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown in table format")


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
        return p.read_text()
    return text


def run_query(args, ctx) -> str | None:
    sql = _read_sql(args.sql)
    con = catalog.connect(ctx.lake, read_only=True)
    try:
        try:
            rel = con.sql(sql)
        except duckdb.Error as e:
            raise BadInput(f"query: {str(e).splitlines()[0]}") from None
        if rel is None:
            return None
        if args.format == "parquet":
            if not args.out:
                raise BadInput("--format parquet needs --out FILE")
            rel.to_arrow_table()  # validate before writing
            import pyarrow.parquet as pq
            pq.write_table(rel.to_arrow_table(), args.out, compression="zstd")
            return f"wrote {args.out}"
        try:
            return render(rel, args.format, args.max_rows)
        except duckdb.Error as e:
            raise BadInput(f"query: {str(e).splitlines()[0]}") from None
    finally:
        con.close()


def run_export(args, ctx) -> str:
    """Write every mart (``fct_*``/``dim_*`` tables of the catalog; with ``--all`` also the
    staging views and intermediate tables) as ``<out>/<name>.parquet`` (zstd), streamed by
    DuckDB and renamed into place, so a reader never sees half a file."""
    import os

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
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
