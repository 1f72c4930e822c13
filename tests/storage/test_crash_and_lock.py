"""Storage guarantees seen from the command line: the writer lock, readers never blocked,
a failed or SIGKILLed command leaves the lake as it was, and the next run succeeds."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.factories import make_sae
from tests.formats import write_saelens
from saew.storage.lake import Lake
from saew.sae.params import SAEParams
from saew.storage.saes import load_sae

ROOT = Path(__file__).resolve().parents[2]
SAEW = ROOT / ".venv" / "bin" / "saew"
PY = ROOT / ".venv" / "bin" / "python"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "SAEW_PROGRESS": "0", "PYTHONPATH": str(ROOT), **extra}


def _holder(home: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the writer lock for ``seconds``; returns once it holds it."""
    code = (f"import time; from saew.storage.lake import Lake\n"
            f"with Lake({str(home)!r}).write_lock():\n"
            f"    print('held', flush=True); time.sleep({seconds})\n")
    p = subprocess.Popen([str(PY), "-c", code], stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    assert p.stdout.readline().strip() == "held"
    return p


def _count(lake: Lake, table: str) -> int:
    return lake.query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def _lake_files(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): p.stat().st_mtime_ns for p in (home / "lake").rglob("*.parquet")}


def test_second_writer_waits_and_readers_are_not_blocked(saew, home, tmp_path):
    first = write_saelens(tmp_path / "a", make_sae(8, 16, seed=0), hook="blocks.0.hook_resid_post")
    assert saew("ingest", "sae", first, "--release", "r")[0] == 0
    second = write_saelens(tmp_path / "b", make_sae(8, 16, seed=1), hook="blocks.1.hook_resid_post")
    holder = _holder(home, 2.0)
    try:
        t0 = time.monotonic()
        # readers while a writer holds the lock: the lake, and a read-only command
        assert _count(Lake(home), "saes") == 1
        code, out, err = saew("query", "SELECT count(*) AS n FROM saes", "--format", "csv")
        assert code == 0 and "1" in out, err
        assert time.monotonic() - t0 < 1.5
        code, out, err = saew("ingest", "sae", second, "--release", "r")  # waits for the holder
        waited = time.monotonic() - t0
    finally:
        holder.wait(timeout=30)
    assert code == 0, err
    assert waited >= 1.5
    assert _count(Lake(home), "saes") == 2


def test_second_writer_gives_up_with_a_clear_message(home, tmp_path):
    f = write_saelens(tmp_path / "a", make_sae(8, 16), hook="blocks.0.hook_resid_post")
    holder = _holder(home, 120.0)  # killed below; long enough for a slow CLI start
    try:
        r = subprocess.run([str(SAEW), "ingest", "sae", str(f), "--release", "r", "--home", str(home)],
                           capture_output=True, text=True, env=_env(SAEW_LOCK_TIMEOUT="0.5"), cwd=ROOT)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "another saew command is writing" in r.stderr
    assert not Lake(home).has_data("saes")


def test_concurrent_writers_never_interleave(home, tmp_path):
    a, b = make_sae(32, 2048, seed=2), make_sae(32, 2048, seed=3)
    fa = write_saelens(tmp_path / "a", a, hook="blocks.0.hook_resid_post")
    fb = write_saelens(tmp_path / "b", b, hook="blocks.0.hook_resid_post")
    procs = [subprocess.Popen([str(SAEW), "ingest", "sae", str(f), "--release", "r", "--home", str(home)],
                              stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT) for f in (fa, fb)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    lake = Lake(home)
    assert _count(lake, "runs") == 2 and _count(lake, "saes") == 1 and _count(lake, "features") == 2048
    sha = lake.query("SELECT source_sha256, source_path FROM saes").to_pylist()[0]
    winner = a if sha["source_path"].startswith(str(fa)) else b
    np.testing.assert_array_equal(load_sae(lake, "r", 0).w_dec, winner.w_dec)  # one SAE whole, not a mix


def test_failed_command_leaves_lake_as_it_was(saew, home, tmp_path):
    a = make_sae(8, 16, seed=4)
    assert saew("ingest", "sae", write_saelens(tmp_path / "a", a, hook="blocks.0.hook_resid_post"), "--release", "r")[0] == 0
    before = _lake_files(home)
    good = write_saelens(tmp_path / "b", make_sae(8, 16, seed=5), hook="blocks.0.hook_resid_post")
    bad = write_saelens(tmp_path / "c", make_sae(8, 16, seed=6), hook="blocks.1.hook_resid_post")
    (bad / "sae_weights.safetensors").write_bytes(b"\x00" * 12)
    code, _, err = saew("ingest", "sae", good, bad, "--release", "r")
    assert code == 2 and "sae_weights.safetensors" in err
    assert _lake_files(home) == before
    np.testing.assert_array_equal(load_sae(Lake(home), "r", 0).w_dec, a.w_dec)
    assert not (home / ".staging").exists() or not any((home / ".staging").iterdir())


def _staged(staging) -> bool:
    """A staged partition file exists; False while the folder comes or goes (a walk of a folder
    being removed raises FileNotFoundError)."""
    try:
        return staging.exists() and any(staging.rglob("*.parquet"))
    except FileNotFoundError:
        return False


def test_sigkill_midway_leaves_lake_readable_and_next_run_succeeds(saew, home, tmp_path):
    small = make_sae(256, 64, seed=7)
    assert saew("ingest", "sae", write_saelens(tmp_path / "small", small, hook="blocks.0.hook_resid_post"),
                "--release", "r")[0] == 0
    before = _lake_files(home)
    rng = np.random.default_rng(0)
    d_in, d_sae = 256, 24576
    big = SAEParams(w_enc=rng.standard_normal((d_in, d_sae), dtype=np.float32),
                    w_dec=rng.standard_normal((d_sae, d_in), dtype=np.float32),
                    b_enc=np.zeros(d_sae, np.float32), b_dec=np.zeros(d_in, np.float32))
    folder = write_saelens(tmp_path / "big", big, hook="blocks.0.hook_resid_post")
    staging = home / ".staging"
    p = subprocess.Popen([str(SAEW), "ingest", "sae", str(folder), "--release", "r", "--home", str(home)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            if _staged(staging):
                break  # it is writing its staged partition files
            time.sleep(0.002)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        rc = p.wait()
    if rc != -signal.SIGKILL:
        pytest.fail(f"the ingest finished (exit {rc}) before it could be killed; make the SAE bigger")
    lake = Lake(home)  # the lake still reads as before
    assert _lake_files(home) == before
    np.testing.assert_array_equal(load_sae(lake, "r", 0).w_dec, small.w_dec)
    assert _count(lake, "runs") == 1 and _count(lake, "features") == 64
    # the next run succeeds and clears the killed command's staging
    other = make_sae(256, 32, seed=8)
    code, _, err = saew("ingest", "sae", write_saelens(tmp_path / "o", other, hook="blocks.0.hook_resid_post"),
                        "--release", "r")
    assert code == 0, err
    np.testing.assert_array_equal(load_sae(Lake(home), "r", 0).w_dec, other.w_dec)
    assert not staging.exists() or not any(staging.iterdir())
    assert not (home / ".journal.json").exists()
