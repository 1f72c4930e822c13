"""Homes written before the version store (``saew.storage.versions``): what is needed to
open them. Their ``part-0.parquet`` files become manifest version 1 (``place`` rewrites a
file whose schema lacks columns added since), and a commit journal a kill left is rolled
forward when every path in it is inside the home (one from a copied home is ignored)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from saew.storage.schemas import TABLES, spec
from saew.storage.versions import VERSIONS

COMPRESSION = "zstd"


def place(home: Path, key: str, src: Path) -> tuple[str, str] | None:
    """One pre-manifest partition file into the version store: its key gains the defaulted
    trailing partition columns it lacks (``TableSpec.partition_defaults``, e.g. ``shard=0``),
    and the file is hard-linked there, or rewritten with null columns for the columns added
    since (e.g. ``runs.units``). None for a table the schema no longer has."""
    table = key.split("/", 1)[0]
    if table not in TABLES:
        return None
    t = spec(table)
    have_cols = {seg.split("=", 1)[0] for seg in key.split("/")[1:]}
    key += "".join(f"/{c}={v}" for c, v in getattr(t, "partition_defaults", ()) if c not in have_cols)
    rel = f"{VERSIONS}/{key}/part-legacy.parquet"
    dest = home / rel
    if dest.exists():
        return key, rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = set(pq.read_schema(src).names)
    missing = [f for f in t.data_schema if f.name not in have]
    if missing:
        tab = pq.read_table(src)
        for f in missing:
            tab = tab.append_column(f, pa.nulls(tab.num_rows, f.type))
        pq.write_table(tab.select(t.data_schema.names), dest, compression=COMPRESSION)
    else:
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    return key, rel


def roll_forward_journal(home: Path) -> None:
    """Finish the renames of ``<home>/.journal.json`` (the lake before the version store)."""
    journal = home / ".journal.json"
    if not journal.exists():
        return
    for op in json.loads(journal.read_text()):
        paths = [Path(op[k]) for k in ("src", "dst", "path") if k in op]
        if not all(p.is_relative_to(home) for p in paths):
            continue  # from another home (this one is a copy): never touch it
        if op["op"] == "replace" and paths[0].exists():
            paths[1].parent.mkdir(parents=True, exist_ok=True)
            os.replace(paths[0], paths[1])
        elif op["op"] == "delete" and paths[0].is_dir():
            shutil.rmtree(paths[0], ignore_errors=True)
    journal.unlink()
