"""The chaos suite (``make chaos``): figures for the README.

* kill -9 every writing command at each commit step (``saew.storage.versions.CHAOS_POINTS``)
  and at random moments, ``--kills`` trials per command; after each kill the lake must read,
  equal the before- or after-state exactly (per partition for per-unit commands), and the next
  run must succeed and give the after-state;
* readers in loops (Lake, catalog, raw read_parquet) while one writer swaps whole 8-layer SAE
  sets: torn and failed reads;
* 4 concurrent writers x 10 commands;
* a full disk: a home on a small tmpfs (root only).

    .venv/bin/python bench/chaos.py [--kills 10] [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability import harness  # noqa: E402
from saew.storage.versions import CHAOS_POINTS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10, help="kill trials per command (default 10)")
    ap.add_argument("--quick", action="store_true", help="no cluster, build, train")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--commands", default=None, help="comma-separated command names to kill (default all)")
    ap.add_argument("--no-extras", action="store_true", help="kills only: no readers, writers, full disk")
    args = ap.parse_args()
    t0 = time.monotonic()
    out: dict = {"kills": {}}
    with tempfile.TemporaryDirectory(prefix="saew-chaos-") as tmp:
        work = Path(tmp)
        base = harness.base_home(work)
        cmds = harness.commands(work, slow=not args.quick)
        if args.commands:
            cmds = {k: v for k, v in cmds.items() if k in args.commands.split(",")}
        n = min(args.kills, len(CHAOS_POINTS))   # commit steps spread over the commit, then random moments
        points = [CHAOS_POINTS[round(i * (len(CHAOS_POINTS) - 1) / max(1, n - 1))] for i in range(n)]
        randoms = max(0, args.kills - len(points))
        for name, (argv, units) in cmds.items():
            fig = harness.kill_trials(work, base, name, argv, units, points, randoms)
            out["kills"][name] = asdict(fig)
            print(f"{name:22s} trials {fig.trials:3d}  killed {fig.killed:3d}  survived {fig.survived:3d}  "
                  f"finished first {fig.not_reached:3d}  failures {len(fig.failures)}", flush=True)
            for f in fig.failures:
                print(f"    {f}", flush=True)
        if args.no_extras:
            return _finish(out, args, t0)
        out["readers"] = harness.readers_during_writes(work, layers=8, writes=20)
        for k in ("lake", "catalog", "raw"):
            r = out["readers"][k]
            print(f"readers {k:8s} reads {r['reads']:6d}  torn {r['torn']:5d}  failed {r['failed']:4d}"
                  + (f"  e.g. {r['errors'][0]}" if r["errors"] else ""), flush=True)
        out["writers"] = harness.concurrent_writers(work, writers=4, each=10)
        print(f"writers: {out['writers']}", flush=True)
        out["full_disk"] = harness.full_disk(work)
        print(f"full disk: {out['full_disk']}", flush=True)
    return _finish(out, args, t0)


def _finish(out: dict, args, t0: float) -> int:
    k = out["kills"].values()
    out["total"] = {"killed": sum(f["killed"] for f in k), "survived": sum(f["survived"] for f in k),
                    "failures": sum(len(f["failures"]) for f in k), "seconds": round(time.monotonic() - t0)}
    print(f"total: {out['total']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    ok = out["total"]["failures"] == 0 and all(out["readers"][k]["failed"] == 0 and out["readers"][k]["torn"] == 0
                                                for k in ("lake", "catalog") if "readers" in out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
