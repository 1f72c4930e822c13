"""The per-release writer lock of DuckLake homes (``saew.storage.locks``): different releases
hold it at once, the same release waits (or ``LockBusy``), a whole-home holder excludes all."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from saew.errors import LockBusy
from saew.storage.locks import home_lock, slice_name

ROOT = Path(__file__).resolve().parents[2]


def _holder(home: Path, release: str | None) -> subprocess.Popen:
    """Another process holding ``home_lock(home, release)`` until its stdin closes."""
    code = ("import sys; from pathlib import Path; from saew.storage.locks import home_lock\n"
            f"with home_lock(Path({str(home)!r}), {release!r}, 30):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def _release(p: subprocess.Popen) -> None:
    p.stdin.close()
    assert p.wait(30) == 0


def test_releases_lock_apart_and_the_whole_home_excludes_them(tmp_path):
    home = tmp_path / "h"
    a = _holder(home, "r1")
    try:
        with home_lock(home, "r2", timeout=1):        # another release: at once
            pass
        with pytest.raises(LockBusy, match="release r1"):
            with home_lock(home, "r1", timeout=0.3):  # the same release: waits, then exit 3
                pass
        with pytest.raises(LockBusy):
            with home_lock(home, None, timeout=0.3):  # the whole home waits for r1
                pass
    finally:
        _release(a)
    g = _holder(home, None)
    try:
        with pytest.raises(LockBusy):
            with home_lock(home, "r2", timeout=0.3):  # and r2 for the whole home
                pass
    finally:
        _release(g)
    with home_lock(home, None, timeout=1):
        pass


def test_module_siblings_share_their_release_slice():
    assert slice_name("r.mlp_out") == slice_name("r.attn_out") == slice_name("r") == "r"
    assert slice_name("gpt2.v5") == "gpt2.v5" and slice_name(None) is None


def test_two_commands_on_different_releases_commit_while_a_third_waits(tmp_path):
    """On a DuckLake home (SQLite catalog) a writer of r1 does not block one of r2."""
    import numpy as np

    from saew.storage.lake import Lake
    from tests.factories import run_saew

    home = tmp_path / "dl"
    assert run_saew(home, "init", "--lake", "ducklake")[0] == 0
    a = _holder(home, "r1")
    try:
        lake = Lake(home)
        with lake.write_lock(timeout=5, release="r2"):
            with lake.transaction():
                lake.write("training_log", {"step": np.arange(2, dtype=np.int32), "tokens_seen": np.arange(2),
                                            "mse": np.ones(2), "fvu": np.ones(2), "l0": np.ones(2),
                                            "dead_frac": np.zeros(2)}, release="r2", layer=0)
        with pytest.raises(LockBusy):
            with lake.write_lock(timeout=0.3, release="r1.mlp_out"):
                pass
    finally:
        _release(a)
    assert Lake(home).query("SELECT count(*) AS n FROM training_log").column("n")[0].as_py() == 2
