"""Writer locks: the whole home, or one slice of it (``flock``, released when the process dies).

* ``home_lock(home, None)``: ``<home>/.write.lock`` held EXCLUSIVE (the Parquet lake always; on a
  DuckLake home a command that names no release, e.g. ``saew build``).
* ``home_lock(home, "R")`` (DuckLake homes only): ``.write.lock`` SHARED plus
  ``.write-R.lock`` EXCLUSIVE, so commands on different releases run at once, two on the same
  release are serialised, and a whole-home command waits for both (and they for it).

A lock not had within ``timeout`` seconds raises ``LockBusy`` (exit 3, one line).
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from saew.errors import LockBusy

GLOBAL = ".write.lock"


def slice_name(release: str | None) -> str | None:
    """The slice a release's command writes: the release, with a module suffix
    (``R.mlp_out``, ``R.attn_out``: siblings ``saew train --release R`` writes too) removed."""
    if release is None:
        return None
    from saew.storage.names import MODULE_POINTS

    for p in MODULE_POINTS:
        if release.endswith("." + p):
            return release[: -len(p) - 1]
    return release


@contextmanager
def _flock(path: Path, exclusive: bool, deadline: float, what: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        pause = 0.02
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(f"{what}: another saew command is writing; try again when it ends") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def home_lock(home: Path, slice_: str | None, timeout: float) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        if slice_ is None:
            stack.enter_context(_flock(home / GLOBAL, True, deadline, str(home)))
        else:
            stack.enter_context(_flock(home / GLOBAL, False, deadline, str(home)))
            stack.enter_context(_flock(home / f".write-{slice_}.lock", True, deadline,
                                       f"{home} (release {slice_})"))
        yield
