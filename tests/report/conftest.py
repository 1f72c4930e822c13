"""The browse tests' shared site: one ``saew browse`` over a copy of the report warehouse."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.browse_site import build_site


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    return build_site(tmp_path_factory.mktemp("browse"))
