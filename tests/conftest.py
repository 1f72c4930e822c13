"""Shared fixtures: a fresh home per test and an in-process ``saew`` runner."""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("SAEW_PROGRESS", "0")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def saew(home: Path):
    """``saew("ingest", "sae", path, "--release", "r")`` -> (exit code, stdout, stderr)."""
    from tests.factories import run_saew

    def _run(*args: str | os.PathLike, home_dir: Path | None = None):
        return run_saew(home_dir or home, *args)

    return _run


@pytest.fixture
def lake(home: Path):
    from saew.storage.lake import Lake

    return Lake(home)
