"""The chaos harness (``make chaos`` runs ``bench/chaos.py``; a short version runs in
``make test``): kill -9 writing commands at every commit step and at random moments, and check
that the lake reads, equals the before- or after-state exactly (per partition for commands that
commit several units), and that the next run succeeds and gives the after-state; readers in
loops during writes; concurrent writers; a full disk.

State = per lake partition (count, sum of row hashes) through :class:`Lake` (the manifest),
the ``runs`` table and per-run columns left out. Every ``saew`` runs as a real process.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAEW = ROOT / ".venv" / "bin" / "saew"
PY = ROOT / ".venv" / "bin" / "python"
VOLATILE = {"saes": ("ingested_at", "run_id", "source_path"), "activation_sets": ("run_id",)}
D_IN = 16


def env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "SAEW_PROGRESS": "0", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
         "TRANSFORMERS_OFFLINE": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    e.pop("SAEW_CHAOS_KILL_AT", None)
    return {**e, **extra}


_FORKER: "Forker | None" = None


def forker() -> "Forker":
    """The fork server this process drives (started on first use)."""
    global _FORKER
    if _FORKER is None or _FORKER.p.poll() is not None:
        _FORKER = Forker()
    return _FORKER


def saew(home: Path, *args, **extra: str) -> subprocess.CompletedProcess:
    """Run one saew command (a forked child of the fork server) to its end."""
    rc, err = forker().run(home, list(args), **extra)
    return subprocess.CompletedProcess(list(args), rc, "", err)


# ---------------------------------------------------------------------------- state
def state(home: Path) -> dict[str, tuple[int, int]]:
    """{partition key: (rows, sum of row hashes)} of every table but ``runs``, read as a reader
    does (which also finishes what a kill left); checks the raw table folders agree."""
    import duckdb

    from saew.storage.lake import Lake
    from saew.storage.schemas import TABLES

    lake = Lake(home)
    con = lake.connect()
    out: dict[str, tuple[int, int]] = {}
    try:
        for name, t in TABLES.items():
            if name == "runs" or not lake.has_data(name):
                continue
            drop = [c for c in VOLATILE.get(name, ()) if c in t.schema.names]
            ex = f" EXCLUDE ({', '.join(drop)})" if drop else ""
            keys = ", ".join(f'"{c}"' for c in t.partition_by)
            rows = con.execute(
                f"SELECT {keys}, count(*), sum(hash(s)::HUGEINT)::VARCHAR FROM "
                f"(SELECT *{ex} FROM \"{name}\") s GROUP BY ALL").fetchall()
            for r in rows:
                key = name + "".join(f"/{c}={v}" for c, v in zip(t.partition_by, r))
                out[key] = (int(r[-2]), int(r[-1]))
            glob = (lake.table_dir(name) / "**" / "*.parquet").as_posix()
            raw = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0]
            n = sum(v[0] for k, v in out.items() if k.startswith(name + "/"))
            if raw != n:
                raise AssertionError(f"{name}: raw read_parquet has {raw} rows, the table {n}")
    finally:
        con.close()
    return out


def catalog_agrees(home: Path, got: dict) -> str | None:
    """The catalog (rebuilt on open if a kill left it behind) has the lake's row counts."""
    from saew.storage import catalog
    from saew.storage.lake import Lake
    from saew.storage.schemas import TABLES

    try:
        con = catalog.connect(Lake(home))
    except Exception as e:  # noqa: BLE001
        return f"the catalog does not open: {e}"
    try:
        for name in TABLES:
            if name == "runs":
                continue
            n = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            want = sum(v[0] for k, v in got.items() if k.startswith(name + "/"))
            if n != want:
                return f"catalog {name}: {n} rows, the lake {want}"
    except Exception as e:  # noqa: BLE001
        return f"the catalog does not read: {e}"
    finally:
        con.close()
    return None


def state_ok(got: dict, before: dict, after: dict, units: bool) -> bool:
    """Before or after, exactly; per partition for a command of several units."""
    if not units:
        return got == before or got == after
    keys = set(got) | set(before) | set(after)
    return all(got.get(k) in (before.get(k), after.get(k)) for k in keys)


# ---------------------------------------------------------------------------- inputs
def sae_folder(folder: Path, layer: int, d_sae: int, seed: int, tag: float | None = None) -> Path:
    from tests.factories import make_sae
    from tests.formats import write_saelens

    p = make_sae(D_IN, d_sae, seed=seed)
    if tag is not None:
        p.b_enc[:] = tag
    return write_saelens(folder, p, hook=f"blocks.{layer}.hook_resid_post")


def base_home(work: Path, layers: int = 3, d_sae: int = 64) -> Path:
    """A small warehouse: release r with ``layers`` SAEs and activations of each layer."""
    import scipy.sparse as sp

    home = work / "base"
    r = saew(home, "ingest", "sae", *[sae_folder(work / f"sae{i}", i, d_sae, i) for i in range(layers)],
             "--release", "r")
    assert r.returncode == 0, r.stderr
    for i in range(layers):
        m = sp.random(400, d_sae, density=0.05, random_state=i, format="csr", dtype=np.float32)
        m.data = np.abs(m.data) + 0.1
        path = work / f"acts{i}.npz"
        sp.save_npz(path, m)
        r = saew(home, "ingest", "activations", path, "--release", "r", "--layer", i)
        assert r.returncode == 0, r.stderr
    return home


def commands(work: Path, layers: int = 3, d_sae: int = 64, slow: bool = False) -> dict[str, tuple[list, bool]]:
    """name -> (saew argv, several units?) of writing commands that change the base home."""
    import scipy.sparse as sp

    new = [sae_folder(work / f"new{i}", i, d_sae // 2, 100 + i) for i in range(layers)]
    desc = work / "desc.jsonl"
    desc.write_text("".join(json.dumps({"modelId": "m", "layer": "0-res", "index": str(f),
                                        "description": f"feature {f}", "explanationModelName": "x"}) + "\n"
                            for f in range(d_sae)))
    perm = work / "P_00_01.npy"
    np.save(perm, np.random.default_rng(1).permutation(d_sae))
    m = sp.random(300, d_sae, density=0.08, random_state=9, format="csr", dtype=np.float32)
    m.data = np.abs(m.data) + 0.1
    acts = work / "acts_new.npz"
    sp.save_npz(acts, m)
    out = {
        "ingest sae": (["ingest", "sae", *new, "--release", "r"], False),
        "ingest descriptions": (["ingest", "descriptions", desc, "--release", "r"], False),
        "ingest matches": (["ingest", "matches", perm, "--release", "r", "--space", "decoder",
                            "--method", "folded"], False),
        "ingest activations": (["ingest", "activations", acts, "--release", "r", "--layer", "1"], False),
        "match": (["match", "--release", "r", "--method", "folded"], True),
        "coactivation": (["coactivation", "--release", "r"], True),
    }
    if slow:
        out["cluster"] = (["cluster", "--release", "r", "--space", "decoder"], True)
        out["build"] = (["build", "--quiet"], False)
        out["train"] = (["train", "--release", "t", "--model", "minilm", "--tokens", "256",
                         "--layers", "0-1", "--d-sae", "32", "--steps", "5"], True)
    return out


# ---------------------------------------------------------------------------- kills
@dataclass
class KillFigures:
    trials: int = 0
    killed: int = 0
    survived: int = 0            # killed, and the lake read as before or after, and the rerun gave after
    not_reached: int = 0         # the command finished before the kill point
    failures: list[str] = field(default_factory=list)


def copy_home(src: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, symlinks=True)
    return dest


def kill_trials(work: Path, base: Path, name: str, argv: list, units: bool, points: list[str],
                randoms: int, seed: int = 0) -> KillFigures:
    """Each trial on a fresh copy of ``base``: run ``argv`` killed at one commit step
    (``SAEW_CHAOS_KILL_AT``) or after a random delay, check the state, run it again."""
    from saew.storage.versions import CHAOS_ENV

    fig = KillFigures()
    before = state(base)
    ref = copy_home(base, work / "ref")
    t0 = time.monotonic()
    r = saew(ref, *argv)
    duration = time.monotonic() - t0
    if r.returncode != 0:
        fig.failures.append(f"{name}: reference run failed: {r.stderr.strip()[-300:]}")
        return fig
    after = state(ref)
    rng = random.Random(seed)
    plan = [("at", p) for p in points] + [("random", rng.uniform(0.3, max(0.4, duration))) for _ in range(randoms)]
    for kind, what in plan:
        fig.trials += 1
        home = copy_home(base, work / "trial")
        extra = {CHAOS_ENV: what} if kind == "at" else {}
        fk = forker()
        pid = fk.start(home, argv, **extra)
        if kind == "random":
            time.sleep(what)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rc, err = fk.wait()
        label = f"{name} killed {kind} {what if kind == 'at' else f'{what:.2f}s'}"
        if rc != -signal.SIGKILL:
            fig.not_reached += 1
            if rc != 0:
                fig.failures.append(f"{label}: exit {rc}: {err.strip()[-300:]}")
            continue
        fig.killed += 1
        try:
            got = state(home)
        except Exception as e:  # noqa: BLE001 - a failed read is a finding
            fig.failures.append(f"{label}: the lake does not read: {e}")
            continue
        if not state_ok(got, before, after, units):
            fig.failures.append(f"{label}: neither the before- nor the after-state")
            continue
        problem = catalog_agrees(home, got)
        if problem:
            fig.failures.append(f"{label}: {problem}")
            continue
        r = saew(home, *argv)
        if r.returncode != 0:
            fig.failures.append(f"{label}: the next run failed: {r.stderr.strip()[-300:]}")
            continue
        if state(home) != after:
            fig.failures.append(f"{label}: the next run did not give the after-state")
            continue
        if (home / ".staging").exists() and any((home / ".staging").iterdir()):
            fig.failures.append(f"{label}: staging left after the next run")
            continue
        fig.survived += 1
    return fig


# ---------------------------------------------------------------------------- readers
def tagged_sets(work: Path, layers: int) -> tuple[list[Path], list[Path]]:
    """Two SAE sets of ``layers`` layers: A (d_sae 64, b_enc 1.0), B (d_sae 32, b_enc 2.0)."""
    a = [sae_folder(work / f"A{i}", i, 64, i, 1.0) for i in range(layers)]
    b = [sae_folder(work / f"B{i}", i, 32, 50 + i, 2.0) for i in range(layers)]
    return a, b


def _consistent(rows: tuple, layers: int) -> bool:
    n, k, tag, s = rows
    width = {1.0: 64, 2.0: 32}.get(tag)
    return k == 1 and width is not None and n == layers * width and s == layers * width


READ_SQL = ("SELECT (SELECT count(*) FROM features), (SELECT count(DISTINCT b_enc) FROM features), "
            "(SELECT min(b_enc) FROM features), (SELECT sum(d_sae) FROM saes)")


def reader_loop(home: Path, seconds: float, kind: str, layers: int) -> dict:
    """Read in a loop: ``lake`` (Lake.query), ``catalog`` (catalog.connect views) or ``raw``
    (read_parquet over the table folders). Counts reads, torn reads, failed reads."""
    import duckdb

    from saew.storage import catalog
    from saew.storage.lake import Lake

    lake = Lake(home)
    reads = torn = failed = 0
    errors: list[str] = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        try:
            if kind == "lake":
                row = lake.query(READ_SQL).to_pylist()[0]
                row = tuple(row.values())
            elif kind == "catalog":
                con = catalog.connect(lake)
                try:
                    row = con.execute(READ_SQL).fetchone()
                finally:
                    con.close()
            else:
                f = (home / "lake" / "features" / "**" / "*.parquet").as_posix()
                s = (home / "lake" / "saes" / "**" / "*.parquet").as_posix()
                row = duckdb.sql(
                    f"SELECT (SELECT count(*) FROM read_parquet('{f}')), (SELECT count(DISTINCT b_enc) "
                    f"FROM read_parquet('{f}')), (SELECT min(b_enc) FROM read_parquet('{f}')), "
                    f"(SELECT sum(d_sae) FROM read_parquet('{s}'))").fetchall()[0]
            reads += 1
            if not _consistent(tuple(row), layers):
                torn += 1
        except Exception as e:  # noqa: BLE001 - a failed read is what we count
            failed += 1
            errors.append(str(e).splitlines()[0][:200])
    return {"kind": kind, "reads": reads, "torn": torn, "failed": failed, "errors": errors[:5]}


def readers_during_writes(work: Path, layers: int, writes: int, kinds=("lake", "catalog", "raw")) -> dict:
    """One writer alternating two whole SAE sets (one unit each) ``writes`` times while a
    reader process per kind loops; {kind: figures}, plus the writer's failures."""
    a, b = tagged_sets(work, layers)
    home = work / "readers"
    shutil.rmtree(home, ignore_errors=True)
    assert saew(home, "ingest", "sae", *a, "--release", "r").returncode == 0
    t0 = time.monotonic()
    assert saew(home, "ingest", "sae", *b, "--release", "r").returncode == 0
    seconds = (time.monotonic() - t0) * writes + 2
    procs = {k: subprocess.Popen([str(PY), "-m", "tests.reliability.harness", "reader", str(home), str(seconds), k,
                                  str(layers)], stdout=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
             for k in kinds}
    bad = []
    for i in range(writes):
        r = saew(home, "ingest", "sae", *(a if i % 2 == 0 else b), "--release", "r")
        if r.returncode != 0:
            bad.append(r.stderr.strip()[-300:])
    out = {k: json.loads(p.communicate(timeout=seconds + 120)[0]) for k, p in procs.items()}
    out["writer_failures"] = bad
    return out


def concurrent_writers(work: Path, writers: int, each: int) -> dict:
    """``writers`` fork servers at once, each running ``each`` ingests of its own layer (two
    SAEs alternating), started together each round: every command must succeed, each layer end
    as its last ingest, and ``runs`` hold one row per command."""
    from saew.storage.lake import Lake

    home = work / "writers"
    shutil.rmtree(home, ignore_errors=True)
    sets = {w: (sae_folder(work / f"w{w}a", w, 32, 200 + w), sae_folder(work / f"w{w}b", w, 16, 300 + w))
            for w in range(writers)}
    servers = [Forker() for _ in range(writers)]
    t0 = time.monotonic()
    fails, errs = 0, []
    try:
        for i in range(each):
            for w, fk in enumerate(servers):
                fk.start(home, ["ingest", "sae", sets[w][i % 2], "--release", "r"])
            for fk in servers:
                rc, err = fk.wait()
                if rc != 0:
                    fails += 1
                    errs.append(err.strip()[-300:])
    finally:
        for fk in servers:
            fk.close()
    seconds = time.monotonic() - t0
    lake = Lake(home)
    runs = lake.query("SELECT count(*) FROM runs").column(0)[0].as_py()
    widths = {r["layer"]: r["d_sae"] for r in lake.query("SELECT layer, d_sae FROM saes").to_pylist()}
    feats = {r["layer"]: r["n"] for r in lake.query("SELECT layer, count(*) n FROM features GROUP BY 1").to_pylist()}
    expect = {w: (32 if (each - 1) % 2 == 0 else 16) for w in range(writers)}
    return {"commands": writers * each, "failed": fails, "runs_rows": runs, "errors": errs[:3],
            "final_ok": widths == expect and feats == expect and runs == writers * each,
            "seconds": round(seconds, 1)}


def full_disk(work: Path, size: str = "3m") -> dict:
    """A home on a small tmpfs (needs root): an ingest too big for it fails with one line and
    leaves the lake as it was and nothing behind; after space is freed the next run succeeds."""
    mnt = work / "tmpfs"
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs here: {r.stderr.strip()}"}
    try:
        home = mnt / "home"
        small = sae_folder(work / "fd_small", 0, 64, 1)
        assert saew(home, "ingest", "sae", small, "--release", "r").returncode == 0
        before = state(home)
        files_before = sorted(p.relative_to(home).as_posix() for p in home.rglob("*")
                              if ".catalog" not in p.as_posix() and "dbt" not in p.parts)
        big = sae_folder(work / "fd_big", 0, 20000, 2)   # ~2.6 MB of weights, twice over in Parquet
        r = saew(home, "ingest", "sae", big, "--release", "r")
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        files_after = sorted(p.relative_to(home).as_posix() for p in home.rglob("*")
                             if ".catalog" not in p.as_posix() and "dbt" not in p.parts)
        out = {"exit": r.returncode, "stderr_lines": len(lines), "message": lines[-1][:200] if lines else "",
               "lake_unchanged": state(home) == before, "nothing_left": files_after == files_before}
        mid = sae_folder(work / "fd_mid", 0, 128, 3)
        out["next_run_ok"] = saew(home, "ingest", "sae", mid, "--release", "r").returncode == 0
        return out
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---------------------------------------------------------------------------- the fork server
class Forker:
    """A process that imported ``saew`` once and forks one child per command, so a kill trial
    costs the command, not seconds of imports. ``start`` returns the child's pid (to kill),
    ``wait`` its exit status (-9 when killed) and the end of its stderr."""

    def __init__(self) -> None:
        self.p = subprocess.Popen([str(PY), "-m", "tests.reliability.harness", "serve"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
        assert self.p.stdout.readline().strip() == "ready"

    def start(self, home: Path, argv: list, **extra: str) -> int:
        req = {"argv": [*map(str, argv), "--home", str(home)], "env": extra}
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        return int(json.loads(self.p.stdout.readline())["pid"])

    def wait(self) -> tuple[int, str]:
        r = json.loads(self.p.stdout.readline())
        return int(r["rc"]), r["err"]

    def run(self, home: Path, argv: list, **extra: str) -> tuple[int, str]:
        self.start(home, argv, **extra)
        return self.wait()

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=60)


def serve() -> None:
    """The fork server's loop: one JSON request per line, answered by {"pid"} then {"rc", "err"}."""
    import tempfile
    import traceback

    from saew.cli.commands import build_parser
    from saew.cli.main import COMMANDS, main

    build_parser(COMMANDS)   # imports every step module once
    base_env = dict(os.environ)
    print("ready", flush=True)
    errf = Path(tempfile.mkstemp(prefix="saew-chaos-err-")[1])
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            rc = 1
            try:
                os.environ.clear()
                os.environ.update({**base_env, **req["env"]})
                fd = os.open(errf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 2)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                rc = main(req["argv"])
            except SystemExit as e:
                rc = int(e.code or 0)
            except BaseException:  # noqa: BLE001 - reported as the child's stderr
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(rc)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "err": errf.read_text()[-2000:]}), flush=True)
    errf.unlink(missing_ok=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    elif sys.argv[1] == "reader":
        print(json.dumps(reader_loop(Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))))
