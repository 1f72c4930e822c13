"""``saew status``: releases, layers, tables and row counts."""
from __future__ import annotations

from saew.sql.render import render
from saew.storage.lake import Lake
from saew.storage.schemas import TABLES


def add_arguments(p) -> None:
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")


def run(args, ctx) -> str:
    lake: Lake = ctx.lake
    con = lake.connect()
    try:
        parts = []
        for name, t in TABLES.items():
            if name == "runs" or not lake.has_data(name):
                continue
            layer = next((c for c in ("layer", "src_layer") if c in t.schema.names), None)
            lay = f'"{layer}"' if layer else "NULL"
            parts.append(f"SELECT '{name}' AS tbl, release, count(DISTINCT {lay}) AS layers, "
                         f"min({lay}) AS first_layer, max({lay}) AS last_layer, count(*) AS n_rows "
                         f'FROM "{name}" GROUP BY release')
        if not parts:
            return f"{lake.home}: empty warehouse (no tables yet)"
        rel = con.sql(" UNION ALL ".join(parts) + " ORDER BY release, tbl")
        runs = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]  # fetchall: DuckDB 2 refuses new work on a half-read result
        return f"warehouse {lake.home}  ({runs} runs)\n" + render(rel, args.format)
    finally:
        con.close()
