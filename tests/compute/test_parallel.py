"""compute.parallel.background: one job in its own process beside the caller, or in-process."""
from __future__ import annotations

import os

import pytest

from saew.compute.parallel import background


def _where(x: int) -> tuple[int, int]:
    if x < 0:
        raise ValueError("negative")
    return x * 2, os.getpid()


@pytest.mark.parametrize("enabled", [True, False])
def test_background_returns_the_result_and_raises_the_error(enabled):
    with background(_where, 21, enabled=enabled) as job:
        value, pid = job.result()
    assert value == 42 and (pid != os.getpid()) == enabled
    with pytest.raises(ValueError, match="negative"):
        with background(_where, -1, enabled=enabled) as job:
            job.result()
