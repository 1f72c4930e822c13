"""Benchmark pipeline steps against an older revision of the code, on copies of one finished home,
and check that they write the same tables.

    .venv/bin/python bench/steps.py --home DIR [--release demo-smollm2] [--old REV] [--reps 1]
                                    STEP [STEP ...]

STEP is one of describe, embed, correlate, coactivation, communities, evaluate. The home (e.g. a
finished ``saew demo`` home) is copied twice into a temporary folder, the old code (``git
archive REV saew``, default HEAD) runs each step on one copy and the working tree's code on the
other, alternately, each step as ``python -m saew`` in its own process. Prints wall and CPU
seconds (the process and its children) of each, the new/old RATIO, and whether the tables the
step writes are identical (embeddings: the largest difference and the smallest cosine per row).
Nothing is written to DIR.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# step -> (command line after the step word, tables it writes)
STEPS: dict[str, tuple[list[str], list[str]]] = {
    "describe": ([], ["descriptions"]),
    "embed": (["--dtype", "auto"], ["embeddings"]),
    "correlate": ([], ["correlations"]),
    "coactivation": ([], ["coactivations"]),
    "communities": ([], ["communities", "graph_nodes", "graph_degrees"]),
    "evaluate": ([], ["reconstruction"]),
}


def run(src: Path, home: Path, release: str, step: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one step with the code under ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), SAEW_PROGRESS="0", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "saew", "--home", str(home), step, "--release", release,
                        *STEPS[step][0]], env=env, cwd=str(home.parent), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{step} ({src}) failed:\n{r.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def table(home: Path, name: str, release: str):
    import duckdb

    con = duckdb.connect()
    try:
        glob = (home / "lake" / name / "**" / "*.parquet").as_posix()
        rel = con.sql(f"SELECT * EXCLUDE (release) FROM read_parquet('{glob}', hive_partitioning = true) "
                      f"WHERE release = '{release}'")
        cols = [c for c in rel.columns if c not in ("embedding", "run_id")]
        return rel.order(", ".join(f'"{c}"' for c in cols)).to_arrow_table()
    finally:
        con.close()


def compare(old_home: Path, new_home: Path, name: str, release: str) -> str:
    import numpy as np

    a, b = table(old_home, name, release), table(new_home, name, release)
    if name != "embeddings":
        return f"{name}: {'identical' if a.equals(b) else 'DIFFERENT'} ({a.num_rows} rows)"
    from saew.storage.lake import list_matrix

    same_keys = a.drop_columns(["embedding"]).equals(b.drop_columns(["embedding"]))
    x, y = list_matrix(a.column("embedding")), list_matrix(b.column("embedding"))
    cos = np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return (f"{name}: keys {'identical' if same_keys else 'DIFFERENT'} ({a.num_rows} rows); vectors: "
            f"max |diff| {np.abs(x - y).max():.2e}, min cosine {cos.min():.6f}, "
            f"identical rows {np.mean((x == y).all(1)):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--release", default="demo-smollm2")
    ap.add_argument("--old", default="HEAD", help="git revision of the old code (default HEAD)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--tmp", default=None, help="where the two copies go (default: a temporary folder)")
    ap.add_argument("steps", nargs="+", choices=sorted(STEPS))
    a = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="saew-bench-steps-", dir=a.tmp))
    try:
        old_src = tmp / "old-src"
        old_src.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.old, "saew"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive, check=True)
        homes = {"old": tmp / "old", "new": tmp / "new"}
        for h in homes.values():
            shutil.copytree(a.home, h, symlinks=True)
        srcs = {"old": old_src, "new": ROOT}
        print(f"old = {a.old}, new = working tree; home {a.home}, release {a.release}")
        for step in a.steps:
            times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
            for _ in range(a.reps):
                for side in ("old", "new"):
                    times[side].append(run(srcs[side], homes[side], a.release, step))
            (ow, oc), (nw, nc) = (min(times[s]) for s in ("old", "new"))
            print(f"{step:13s} old {ow:6.1f} s wall {oc:6.1f} s CPU | new {nw:6.1f} s wall {nc:6.1f} s CPU"
                  f" | RATIO new/old {nw / ow:.3f} wall, {nc / oc:.3f} CPU", flush=True)
            for name in STEPS[step][1]:
                print(f"    {compare(homes['old'], homes['new'], name, a.release)}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
