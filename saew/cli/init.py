"""``saew init``: choose a home's storage engine (writes ``<home>/saew.toml``).

``--lake parquet`` (the default) is the Hive-partitioned Parquet lake; ``--lake ducklake`` keeps
the tables in a DuckLake: its catalog in ``<home>/ducklake.sqlite`` unless ``--catalog
postgres:dbname=... host=... port=... user=...`` (many writers), its data files under
``--data-path`` (default ``<home>/ducklake-data/``). Re-running with the same settings changes
nothing; with other settings on a home that holds data it is refused (exit 2).
"""
from __future__ import annotations

from saew.errors import BadInput
from saew.storage import config
from saew.storage.schemas import TABLES


def add_arguments(p) -> None:
    p.add_argument("--lake", choices=list(config.ENGINES), default="parquet",
                   help="storage engine (default parquet)")
    p.add_argument("--catalog", default=None,
                   help="ducklake catalog: postgres:dbname=... host=... port=... user=..., or sqlite:PATH "
                        "(default sqlite:<home>/ducklake.sqlite)")
    p.add_argument("--data-path", default=None, help="ducklake data files (default <home>/ducklake-data/)")


def _has_data(lake) -> bool:
    if lake.engine is None:
        return lake.manifest().version > 0 or any((lake.home / "lake").glob("*/**/*.parquet"))
    return any(lake.has_data(t) for t in TABLES)


def run(args, ctx) -> str:
    lake, home = ctx.lake, ctx.home
    new = config.default(home, args.lake, args.catalog, args.data_path)
    old = lake.config
    exists = (home / config.CONFIG).exists()
    if old != new and _has_data(lake):
        raise BadInput(f"{home}: already holds a {old.engine} lake with data; init with other settings "
                       f"(--lake {new.engine}) would leave it behind (use a new --home)")
    if new.is_ducklake:
        from saew.storage.ducklake import DuckLake, attach_sql

        engine = DuckLake(home, new)
        engine.ensure_tables()   # fails (one line) before anything is written if the catalog is unreachable
        snap = engine.current()
    if not exists or old != new:
        config.write(home, new)
    head = f"{home}: {'initialised' if not exists or old != new else 'already'} a {new.engine} lake"
    if not new.is_ducklake:
        return head
    return "\n".join([f"{head} (catalog {new.catalog}, data {new.data_path}, snapshot {snap})",
                      f"notebooks / BI tools: {attach_sql(home, new)}"])
