"""A home's storage configuration, ``<home>/saew.toml`` (written by ``saew init``).

::

    # written by saew init
    [lake]
    engine = "ducklake"                                   # or "parquet" (the default)
    catalog = "sqlite:/abs/home/ducklake.sqlite"          # or "postgres:dbname=... host=..."
    data_path = "/abs/home/ducklake-data/"

A home without the file is a Parquet home (today's lake). Every command reads the file
through :func:`read` (``Lake(home)`` does), so no step knows which engine runs.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from saew.errors import BadInput

CONFIG = "saew.toml"
ENGINES = ("parquet", "ducklake")
SQLITE_FILE = "ducklake.sqlite"
DATA_DIR = "ducklake-data"


@dataclass(frozen=True)
class LakeConfig:
    engine: str = "parquet"
    catalog: str = ""      # "sqlite:<path>" or "postgres:<libpq key=value DSN>" (ducklake only)
    data_path: str = ""    # where DuckLake writes its Parquet files (ducklake only), ends with "/"

    @property
    def is_ducklake(self) -> bool:
        return self.engine == "ducklake"

    @property
    def attach_uri(self) -> str:
        """The ``ATTACH`` target: ``ducklake:sqlite:<path>`` or ``ducklake:postgres:<dsn>``."""
        return f"ducklake:{self.catalog}"


def default(home: Path, engine: str, catalog: str | None = None, data_path: str | None = None) -> LakeConfig:
    """The configuration ``saew init`` writes: for ducklake a SQLite catalog file and a data
    folder under the home unless given."""
    if engine not in ENGINES:
        raise BadInput(f"--lake {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "parquet":
        if catalog or data_path:
            raise BadInput("--catalog/--data-path: only for --lake ducklake")
        return LakeConfig()
    cat = normalize_catalog(catalog, home) if catalog else f"sqlite:{home / SQLITE_FILE}"
    dp = Path(data_path).expanduser().resolve() if data_path else home / DATA_DIR
    return LakeConfig("ducklake", cat, dp.as_posix().rstrip("/") + "/")


def normalize_catalog(dsn: str, home: Path) -> str:
    """``postgres:...`` / ``postgresql:...`` (a libpq DSN) or ``sqlite:PATH`` (made absolute);
    a leading ``ducklake:`` is dropped. Anything else is BadInput."""
    s = dsn.strip()
    if s.startswith("ducklake:"):
        s = s[len("ducklake:"):]
    kind, sep, rest = s.partition(":")
    if not sep or not rest.strip():
        raise BadInput(f"--catalog {dsn!r}: expected postgres:dbname=... host=... or sqlite:PATH")
    if kind in ("postgres", "postgresql"):
        return f"postgres:{rest.strip()}"
    if kind == "sqlite":
        p = Path(rest).expanduser()
        return f"sqlite:{(p if p.is_absolute() else (Path.cwd() / p)).resolve()}"
    raise BadInput(f"--catalog {dsn!r}: the catalog must be postgres:... or sqlite:PATH "
                   f"(a DuckDB-file catalog would lock readers out)")


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(cfg: LakeConfig) -> str:
    lines = ["# written by saew init; see docs/storage.md", "[lake]", f"engine = {_quote(cfg.engine)}"]
    if cfg.is_ducklake:
        lines += [f"catalog = {_quote(cfg.catalog)}", f"data_path = {_quote(cfg.data_path)}"]
    return "\n".join(lines) + "\n"


def read(home: Path) -> LakeConfig:
    """The home's configuration (a Parquet home when there is no ``saew.toml``)."""
    path = home / CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LakeConfig()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the home's configuration ({type(e).__name__})") from None
    try:
        d = tomllib.loads(text).get("lake", {})
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: not valid TOML ({e})") from None
    engine = d.get("engine", "parquet")
    if engine not in ENGINES:
        raise BadInput(f"{path}: lake.engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "parquet":
        return LakeConfig()
    cat, dp = d.get("catalog"), d.get("data_path")
    if not isinstance(cat, str) or not isinstance(dp, str) or not cat or not dp:
        raise BadInput(f"{path}: a ducklake home needs lake.catalog and lake.data_path")
    return LakeConfig("ducklake", cat, dp)


def write(home: Path, cfg: LakeConfig) -> Path:
    """Write ``saew.toml`` atomically (temporary file + rename)."""
    import os

    home.mkdir(parents=True, exist_ok=True)
    path = home / CONFIG
    tmp = home / f".{CONFIG}.tmp"
    tmp.write_text(render(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
