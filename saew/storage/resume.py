"""Resuming a killed or failed command: which of its units are already in the lake.

A command's ``runs`` row lists the units it committed (``status`` 'partial' until its last
unit). Re-run with the same ``resume_key`` (its params but those that do not change results),
it does only the units missing from the latest unbroken chain of such partial runs.
"""
from __future__ import annotations

import json

RESUME_IGNORED = ("home", "workers", "executor", "device", "ray_address")  # params that do not change results


def resume_key(params_json: str) -> str:
    """The part of a run's params JSON that decides its results: every param but
    ``RESUME_IGNORED`` (where it runs and on what), as sorted JSON."""
    d = json.loads(params_json) if params_json else {}
    return json.dumps({k: v for k, v in d.items() if k not in RESUME_IGNORED}, sort_keys=True)


def same_params(params_json: str, want: dict) -> bool:
    """A stored params JSON agrees with every key of ``want`` (a ``params_key``; the keys it
    leaves out are the ones that do not change results)."""
    try:
        have = json.loads(params_json or "{}")
    except ValueError:
        return False
    missing = object()
    return all(have.get(k, missing) == v for k, v in want.items())


def finished_units(rows: list[dict], run_id: str | None, command: str, params_key: str) -> set[str]:
    """The units of ``rows`` (``runs``, newest first) that the current run (``run_id``) and the
    latest unbroken chain of earlier partial runs of ``command`` with ``params_key`` committed,
    back to its last complete run or any other command's run."""
    want = json.loads(params_key) if params_key else {}
    done: set[str] = set()
    for r in rows:
        if r["run_id"] == run_id:
            done |= set(r["units"] or [])
            continue
        if r["command"] != command or r["status"] != "partial" or not same_params(r["params"], want):
            break
        done |= set(r["units"] or [])
    return done
