"""A DuckDB relation as text: an aligned table, CSV or JSON (``saew query`` and ``saew status``)."""
from __future__ import annotations

import json

import duckdb


def render(rel: duckdb.DuckDBPyRelation, fmt: str, max_rows: int = 100) -> str:
    """``fmt`` 'json' (a list of row objects), 'csv' (header and every row) or 'table' (at most
    ``max_rows`` rows, columns padded, numbers right-aligned, a note when rows were cut)."""
    cols = rel.columns
    if fmt == "json":
        rows = rel.fetchall()
        return json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=None)
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rel.fetchall())
        return buf.getvalue().rstrip("\n")
    rows = rel.limit(max_rows + 1).fetchall()
    shown = [[_fmt(v) for v in r] for r in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if _num(v) else v.ljust(w) for v, w in zip(r, widths)) for r in shown]
    if len(rows) > max_rows:
        out.append(f"... (more than {max_rows} rows; use --format csv for all)")
    return "\n".join(out)


def _fmt(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
