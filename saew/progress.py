"""Progress bars on a TTY, silence elsewhere."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    if os.environ.get("SAEW_PROGRESS") == "1":
        return True
    return sys.stderr.isatty() and os.environ.get("SAEW_PROGRESS") != "0"


def progress(it: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it"):
    """``tqdm`` on a TTY (or SAEW_PROGRESS=1), a silent pass-through otherwise."""
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, unit=unit, disable=not enabled(), leave=False,
                dynamic_ncols=True)
