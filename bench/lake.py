"""Benchmark: the lake engines (parquet, ducklake+sqlite, ducklake+postgres) at GPT-2 v5-32k shape,
and commit throughput with 1, 2, 4 concurrent writers on a Postgres catalog.

    .venv/bin/python bench/lake.py [--small] [--layers 12] [--d-sae 32768] [--d-in 768]
                                   [--engines parquet,ducklake+sqlite,ducklake+postgres]
                                   [--writers 1,2,4] [--commands 4] [--commits 40] [--root DIR] [--out FILE.json]

Part 1, per engine, on a fresh home made by ``saew init`` (``--lake parquet``; ``--lake ducklake``
with its default SQLite catalog; ``--lake ducklake --catalog postgres:...`` on a throwaway server of
``tests/pg.py``): ``saew ingest sae`` of a synthetic 12 x 32,768 x 768 release (``bench/scale.py``'s
generator: structured decoder rows, no downloads), then ``saew build --quiet``. Each is its own
``python -m saew`` process: wall seconds and the peak RSS of its process tree (``bench/scale.py``'s
``run_step``; the Postgres server's own memory is not in it). Size on disk: the home plus the data
path, plus for Postgres the catalog database (``pg_database_size``). Baseline, same run: the
parquet engine (ratios engine / parquet).

Part 2 (run first: it is the short one), Postgres catalog only, N = 1, 2, 4 writers at once (baseline N = 1):
* saew commands: each writer runs ``--commands`` ``saew ingest sae`` of a small SAE (one layer,
  512 x 64), each into its own release (different slices, so none waits for a lock): commands/s
  over the wall time of all of them, process start-up included, and that every run is in ``runs``.
* DuckLake commits: each writer process opens the home's DuckLake (``saew.storage.ducklake``) and
  commits ``--commits`` one-row transactions into a scratch table: commits/s, and that none is lost.

``--small`` is a quick run (2 x 2,048 x 64, 3 commands and 20 commits per writer).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import run_step, synthetic_release  # noqa: E402

RELEASE = "gpt2-v5-synth"
ENGINES = ("parquet", "ducklake+sqlite", "ducklake+postgres")
SMALL = {"layers": 2, "d_sae": 2048, "d_in": 64, "commands": 3, "commits": 20}
SCRATCH = "bench_commits"  # the scratch table of the commit benchmark (in its own catalog database)

# a writer of part 2's DuckLake commits: argv = home, writer id, commits
COMMITTER = """
import sys, time
from pathlib import Path
from saew.storage.config import read
from saew.storage.ducklake import open_connection
home, w, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
con = open_connection(home, read(home))
t0 = time.perf_counter()
for i in range(n):
    con.execute("INSERT INTO lake.%s VALUES (?, ?)", [w, i])
print(time.perf_counter() - t0)
""" % SCRATCH


def du(path: Path) -> int:
    """Bytes of the files under ``path``: symlinks not followed, a hard-linked file once (the
    Parquet lake's version store links unchanged files)."""
    if not path.exists():
        return 0
    seen: dict[tuple[int, int], int] = {}
    for p in path.rglob("*"):
        st = p.lstat()
        if p.is_file() and not p.is_symlink():
            seen[st.st_dev, st.st_ino] = st.st_size
    return sum(seen.values())


def pg_size(server, dbname: str) -> int:
    r = subprocess.run([*server.prefix, str(server.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(server.port),
                        "-U", "postgres", "-d", dbname, "-Atc", f"SELECT pg_database_size('{dbname}')"],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.strip())


def init_args(engine: str, catalog: str | None) -> list[str]:
    if engine == "parquet":
        return ["init", "--lake", "parquet"]
    return ["init", "--lake", "ducklake", *(["--catalog", catalog] if catalog else [])]


def engine_home(root: Path, engine: str, server, dbname: str) -> tuple[Path, str | None]:
    """A fresh home for ``engine`` (and for postgres a fresh catalog database ``dbname``)."""
    home = root / f"home-{engine.replace('+', '-')}"
    shutil.rmtree(home, ignore_errors=True)
    catalog = server.createdb(dbname) if engine == "ducklake+postgres" else None
    run_step(home, init_args(engine, catalog))
    return home, catalog


def bench_engines(root: Path, folders: list[Path], engines: list[str], server) -> dict[str, dict]:
    fig: dict[str, dict] = {}
    for engine in engines:
        home, _ = engine_home(root, engine, server, "bench_engine")
        fig[engine] = {
            "ingest": run_step(home, ["ingest", "sae", *map(str, folders), "--release", RELEASE]),
            "build": run_step(home, ["build", "--quiet"]),
        }
        size = du(home)
        if engine.startswith("ducklake"):
            from saew.storage.config import read
            data = Path(read(home).data_path)
            size += 0 if data.is_relative_to(home) else du(data)
        if engine == "ducklake+postgres":
            size += pg_size(server, "bench_engine")
        fig[engine]["size_mb"] = round(size / 2**20, 1)
        for step in ("ingest", "build"):
            r = fig[engine][step]
            print(f"{engine:>18} {step:>6}: {r['wall_s']:8.1f} s  peak {r['peak_mb']:6d} MB", flush=True)
        print(f"{engine:>18}   size: {fig[engine]['size_mb']:8.1f} MB", flush=True)
    return fig


def _saew_env() -> dict[str, str]:
    return dict(os.environ, SAEW_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                PYTHONPATH=str(ROOT), DBT_SEND_ANONYMOUS_USAGE_STATS="False")


def writer_commands(home: Path, folder: Path, w: int, n: int) -> subprocess.Popen:
    """One writer: ``n`` ``saew ingest sae`` one after another, releases ``w<w>-<k>``."""
    script = " && ".join(
        f"{sys.executable} -m saew --home {home} ingest sae {folder} --release w{w}-{k} >/dev/null"
        for k in range(n))
    return subprocess.Popen(["sh", "-c", script], env=_saew_env(), stderr=subprocess.PIPE, text=True)


def runs_count(home: Path) -> int:
    from saew.storage.config import read
    from saew.storage.ducklake import open_connection

    con = open_connection(home, read(home))
    try:
        return con.execute("SELECT count(DISTINCT json_extract_string(params, '$.release')) FROM lake.runs "
                           "WHERE status = 'ok' AND json_extract_string(params, '$.release') LIKE 'w%-%'").fetchone()[0]
    finally:
        con.close()


def bench_writers(root: Path, writers: list[int], commands: int, commits: int, server) -> dict[int, dict]:
    small = synthetic_release(root / "small-sae", 1, 512, 64, seed=1)[0]
    fig: dict[int, dict] = {}
    for n in writers:
        home, _ = engine_home(root, "ducklake+postgres", server, f"bench_writers_{n}")
        t0 = time.perf_counter()
        procs = [writer_commands(home, small, w, commands) for w in range(n)]
        errs = [p.communicate()[1] for p in procs]
        wall = time.perf_counter() - t0
        if any(p.returncode for p in procs):
            raise SystemExit("a writer failed:\n" + "\n".join(e[-2000:] for e in errs))
        got = runs_count(home)
        if got != n * commands:
            raise SystemExit(f"{n} writers: {got} of {n * commands} runs committed")

        from saew.storage.config import read
        from saew.storage.ducklake import open_connection
        con = open_connection(home, read(home))
        con.execute(f"CREATE TABLE lake.{SCRATCH} (w INTEGER, i INTEGER)")
        con.close()
        t1 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", COMMITTER, str(home), str(w), str(commits)],
                                  env=_saew_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w in range(n)]
        outs = [p.communicate() for p in procs]
        wall_c = time.perf_counter() - t1
        if any(p.returncode for p in procs):
            raise SystemExit("a committer failed:\n" + "\n".join(e[-2000:] for _, e in outs))
        loop_s = max(float(o.strip().splitlines()[-1]) for o, _ in outs)  # the commit loops, start-up excluded
        con = open_connection(home, read(home))
        rows = con.execute(f"SELECT count(DISTINCT (w, i)) FROM lake.{SCRATCH}").fetchone()[0]
        con.close()
        if rows != n * commits:
            raise SystemExit(f"{n} writers: {rows} of {n * commits} commits landed")
        fig[n] = {"commands": n * commands, "commands_wall_s": round(wall, 2),
                  "commands_per_s": round(n * commands / wall, 3),
                  "commits": n * commits, "commits_wall_s": round(wall_c, 2),
                  "commits_per_s": round(n * commits / loop_s, 1)}
        print(f"{n} writer(s): {fig[n]['commands_per_s']:.2f} saew commands/s   "
              f"{fig[n]['commits_per_s']:.1f} DuckLake commits/s", flush=True)
    return fig


def report(engines: dict[str, dict], writers: dict[int, dict], shape: tuple[int, int, int]) -> None:
    if not engines:
        engines = {}
    print(f"\nshape {shape[0]} x {shape[1]} x {shape[2]}; ratios to parquet (same run)")
    print("| engine | ingest s | ingest peak MB | build s | build peak MB | size MB | ingest / parquet | build / parquet |")
    print("|---|---|---|---|---|---|---|---|")
    base = engines.get("parquet")
    for e, f in engines.items():
        ri = f"{f['ingest']['wall_s'] / base['ingest']['wall_s']:.2f}x" if base else "-"
        rb = f"{f['build']['wall_s'] / base['build']['wall_s']:.2f}x" if base else "-"
        print(f"| {e} | {f['ingest']['wall_s']:.1f} | {f['ingest']['peak_mb']} | {f['build']['wall_s']:.1f} | "
              f"{f['build']['peak_mb']} | {f['size_mb']:.1f} | {ri} | {rb} |")
    if writers:
        one = writers[min(writers)]
        print("\n| writers (postgres) | saew commands/s | vs 1 writer | DuckLake commits/s | vs 1 writer |")
        print("|---|---|---|---|---|")
        for n, f in writers.items():
            print(f"| {n} | {f['commands_per_s']:.2f} | {f['commands_per_s'] / one['commands_per_s']:.2f}x | "
                  f"{f['commits_per_s']:.1f} | {f['commits_per_s'] / one['commits_per_s']:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick run: " + json.dumps(SMALL))
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-sae", type=int, default=32768)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--writers", default="1,2,4")
    ap.add_argument("--commands", type=int, default=4, help="saew commands per writer")
    ap.add_argument("--commits", type=int, default=40, help="DuckLake commits per writer")
    ap.add_argument("--root", default=None, help="keep the SAEs and homes here (default: a temp dir)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    a = ap.parse_args()
    if a.small:
        a.layers, a.d_sae, a.d_in, a.commands, a.commits = (SMALL[k] for k in
                                                            ("layers", "d_sae", "d_in", "commands", "commits"))
    engines = [e for e in a.engines.split(",") if e]
    if unknown := set(engines) - set(ENGINES):
        raise SystemExit(f"--engines: unknown {', '.join(sorted(unknown))} (expected {', '.join(ENGINES)})")
    writers = [int(n) for n in a.writers.split(",") if n]

    from tests import pg
    if (why := pg.unavailable()) is not None:
        raise SystemExit(f"bench/lake.py needs PostgreSQL: {why}")
    tmp = None if a.root else tempfile.mkdtemp(prefix="saew-lake-")
    root = Path(a.root or tmp)
    prefix, uid, _ = pg.user_prefix()
    server = pg.start(pg.find_bin_dir(), prefix, uid)
    try:  # the quick part first (small SAEs), so a long run has it even if stopped early
        fw = bench_writers(root, writers, a.commands, a.commits, server) if writers else {}
        t0 = time.perf_counter()
        folders = synthetic_release(root / "saes", a.layers, a.d_sae, a.d_in)
        print(f"synthetic release: {a.layers} x {a.d_sae} x {a.d_in} in {time.perf_counter() - t0:.0f} s",
              flush=True)
        fe = bench_engines(root, folders, engines, server)
        report(fe, fw, (a.layers, a.d_sae, a.d_in))
        if a.out:
            Path(a.out).write_text(json.dumps({"shape": [a.layers, a.d_sae, a.d_in], "engines": fe,
                                               "writers": fw}, indent=2))
    finally:
        pg.stop(server)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
