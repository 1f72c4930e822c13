"""``saew snapshots``: the snapshots of a DuckLake home (id, time, command, run_id), oldest first.

Each unit of work of a command is one snapshot; ``saew query --at SNAPSHOT`` reads the lake
tables as of one. On a Parquet home: one line, exit 2.
"""
from __future__ import annotations

import duckdb

from saew.sql.render import render


def add_arguments(p) -> None:
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    p.add_argument("--max-rows", type=int, default=1000, help="rows shown in table format")


def run(args, ctx) -> str:
    t = ctx.lake.snapshots()
    con = duckdb.connect()
    try:
        return render(con.from_arrow(t), args.format, args.max_rows)
    finally:
        con.close()
