"""``saew build``: ``dbt build`` (models and data tests) on the catalog of a home."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from saew.storage import catalog
from saew.errors import BadInput

PROJECT_DIR = Path(__file__).resolve().parents[2]


def add_arguments(p) -> None:
    p.add_argument("--select", "-s", default=None, help="dbt node selection (default: everything)")
    p.add_argument("--vars", default=None, help="dbt vars as YAML, e.g. \"{survive_threshold: 0.6}\"")
    p.add_argument("--quiet", action="store_true", help="print only dbt's summary line")


def dbt_env(home: Path, catalog_file: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SAEW_HOME=str(home), SAEW_CATALOG=str(catalog_file or home / "saew.duckdb"),
               DBT_PROFILES_DIR=str(PROJECT_DIR),
               DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1", DBT_USE_COLORS="False",
               DBT_TARGET_PATH=str(home / "dbt" / "target"), DBT_LOG_PATH=str(home / "dbt" / "logs"),
               HF_HUB_OFFLINE="1")
    return env


def dbt(home: Path, *argv: str, quiet: bool = False, catalog_file: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("dbt")
    cmd = [str(exe) if exe.exists() else "dbt", *argv, "--project-dir", str(PROJECT_DIR)]
    return subprocess.run(cmd, env=dbt_env(home, catalog_file), capture_output=True, text=True)


def run(args, ctx) -> str:
    """dbt builds on a fresh copy of the catalog (``catalog.building``), swapped in when it
    passes: readers keep the previous marts meanwhile, and a failed build changes nothing."""
    argv = ["build"]
    if args.select:
        argv += ["--select", args.select]
    if args.vars:
        argv += ["--vars", args.vars]
    with catalog.building(ctx.lake) as catalog_file:
        r = dbt(ctx.home, *argv, catalog_file=catalog_file)
        out = (r.stdout or "") + (r.stderr or "")
        if r.returncode != 0:
            tail = [ln for ln in out.splitlines() if "ERROR" in ln or "FAIL" in ln or "Error" in ln]
            sys.stderr.write(out if not args.quiet else "\n".join(tail[-20:]) + "\n")
            raise BadInput(f"dbt build failed ({len(tail)} error lines; see {ctx.home / 'dbt' / 'logs'})")
    lines = out.splitlines()
    summary = next((ln for ln in reversed(lines) if "Done." in ln or "PASS=" in ln), "dbt build passed")
    summary = re.sub(r"^\d\d:\d\d:\d\d\s+", "", _ANSI.sub("", summary.strip()))
    return summary if args.quiet else out.rstrip()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
