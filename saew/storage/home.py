"""Where a warehouse is and what a release may be called (no path tricks)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from saew.errors import BadInput

RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DEFAULT_HOME = "saew-home"  # relative to the working directory; never a source folder


def check_release(release: str) -> str:
    """Refuse release names that are not ``[A-Za-z0-9][A-Za-z0-9._-]{0,99}``."""
    if not isinstance(release, str) or not RELEASE_RE.fullmatch(release) or release in {".", ".."}:
        raise BadInput(f"--release {release!r}: release names must match [A-Za-z0-9][A-Za-z0-9._-]{{0,99}}")
    return release


def resolve_home(home: str | os.PathLike | None) -> Path:
    """``--home``, else ``$SAEW_HOME``, else ``./saew-home`` (never a source folder)."""
    return Path(home or os.environ.get("SAEW_HOME") or DEFAULT_HOME).resolve()
