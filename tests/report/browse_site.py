"""The feature browser written once for the browse tests (tests/report/conftest.py: ``site``),
and how the tests find a folder, a page's section and the Chromium binary."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.factories import run_saew
from tests.factories_report import built_report_warehouse
from saew.report.browse.assets import page_name

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def build_site(root: Path) -> Path:
    """A copy of the report warehouse under ``root`` with its feature browser written (saew browse)."""
    home = root / "home"
    shutil.copytree(built_report_warehouse(), home, ignore=shutil.ignore_patterns(".write.lock"))
    code, out, err = run_saew(home, "browse", "--release", "r")
    assert code == 0, err
    assert out.strip() == str(home / "reports" / "r" / "features" / "index.html")
    assert "warning" not in err
    return home


def features(home: Path) -> Path:
    return home / "reports" / "r" / "features"


def section(home: Path, layer: int, feature: int) -> str:
    page = (features(home) / page_name(layer, feature)).read_text()
    m = re.search(rf"<section class=feat id=f{feature}>(.*?)</section>", page, re.S)
    assert m, (layer, feature)
    return m.group(1)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
