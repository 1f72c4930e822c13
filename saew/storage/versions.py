"""The version store and the manifest: what the lake *is*, switched in one atomic step.

Layout (every path the manifest holds is RELATIVE to the home, so a moved or copied home
is the same warehouse):

* ``<home>/.versions/<table>/<col>=<v>/.../part-<unit>.parquet``: immutable data files, one
  per (partition, unit of work that wrote it); never rewritten in place.
* ``<home>/.versions/_dirs/<rel folder>/unit-<unit>/``: immutable folders (SAELens SAE folders).
* ``<home>/lake/_manifest.json``: ``{"version": n, "files": {partition key -> data file},
  "dirs": {folder -> version folder}, "retired": {path -> [version, unix time]}}``, where a
  partition key is ``<table>/<col>=<v>/...``. Replaced by one ``os.replace`` per unit of work:
  THE commit point. A reader that reads the manifest once sees one whole state.
* ``<home>/lake/<table>/<partition>/part-0.parquet``: a hard link to the current data file of
  each partition (a copy where links are impossible), and ``<home>/<folder>`` a relative
  symlink to the current version folder; both derived from the manifest by ``links.sync``,
  which runs after each commit and on the next open by anyone when a kill interrupted it
  (stamp ``lake/.links-version``). So when nothing runs, a raw
  ``read_parquet('<home>/lake/<table>/**/*.parquet', hive_partitioning = true)`` is exactly
  the table; while a commit's links are being switched it may see some partitions old and
  some new (each file whole).

Garbage: a superseded file stays in ``retired`` until it is older than ``SAEW_GC_KEEP``
manifests (default 3) AND ``SAEW_GC_GRACE`` seconds (default 900), so a reader that listed
an older manifest's files can still open them; files no manifest names (a killed writer's)
are swept once older than the grace time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

MANIFEST = "lake/_manifest.json"
LINKS_STAMP = "lake/.links-version"
VERSIONS = ".versions"
DIRS = "_dirs"
PART_FILE = "part-0.parquet"
FORMAT = "saew-manifest/1"


CHAOS_ENV = "SAEW_CHAOS_KILL_AT"
CHAOS_POINTS = ("stage", "move", "manifest", "committed", "link", "synced", "catalog")


def chaos(point: str) -> None:
    """The chaos suite's hook (bench/chaos.py): kill -9 this process at a named step of a
    commit when $SAEW_CHAOS_KILL_AT names it (one of ``CHAOS_POINTS``)."""
    if os.environ.get(CHAOS_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def gc_grace() -> float:
    return float(os.environ.get("SAEW_GC_GRACE", "900"))


def gc_keep() -> int:
    return int(os.environ.get("SAEW_GC_KEEP", "3"))


@dataclass(frozen=True)
class Manifest:
    version: int = 0
    files: Mapping[str, str] = field(default_factory=dict)    # partition key -> data file
    dirs: Mapping[str, str] = field(default_factory=dict)     # folder -> version folder
    retired: Mapping[str, tuple[int, float]] = field(default_factory=dict)

    def table_files(self, table: str) -> list[str]:
        """The data files of one table (relative to the home), in partition-key order."""
        pre = table + "/"
        return [self.files[k] for k in sorted(self.files) if k.startswith(pre)]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": self.version, "files": dict(self.files),
                           "dirs": dict(self.dirs),
                           "retired": {k: list(v) for k, v in self.retired.items()}}, sort_keys=True)


# ---------------------------------------------------------------------------- reading
_CACHE: dict[str, tuple[tuple[int, int, int], Manifest]] = {}


def read(home: Path) -> Manifest:
    """The current manifest (version 0 and empty when there is none yet); cached by stat."""
    path = home / MANIFEST
    try:
        st = path.stat()
    except FileNotFoundError:
        return Manifest()
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(str(path))
    if hit is not None and hit[0] == key:
        return hit[1]
    d = json.loads(path.read_text())
    m = Manifest(int(d["version"]), d.get("files", {}), d.get("dirs", {}),
                 {k: (int(v[0]), float(v[1])) for k, v in d.get("retired", {}).items()})
    _CACHE[str(path)] = (key, m)
    return m


@contextmanager
def lock(home: Path, name: str, timeout: float) -> Iterator[bool]:
    """A short inter-process lock; yields False (not held) when ``timeout`` passes first."""
    from filelock import FileLock, Timeout

    home.mkdir(parents=True, exist_ok=True)
    fl = FileLock(str(home / name))
    try:
        fl.acquire(timeout=timeout)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        fl.release()


# ---------------------------------------------------------------------------- committing
@dataclass
class Unit:
    """What one unit of work changes, in order: file puts, prefix deletes, folder puts."""
    ops: list[tuple[str, str, Path | None]] = field(default_factory=list)  # (op, key, staged)

    def put(self, key: str, staged: Path) -> None:
        self.ops.append(("put", key, staged))

    def delete(self, prefix: str) -> None:
        self.ops.append(("delete", prefix, None))

    def put_dir(self, rel: str, staged: Path) -> None:
        self.ops.append(("dir", rel, staged))

    def put_keys(self) -> set[str]:
        return {k for op, k, _ in self.ops if op == "put"}

    def __bool__(self) -> bool:
        return bool(self.ops)


def commit(home: Path, unit: Unit, unit_id: str) -> Manifest:
    """Move a unit's staged files into the version store and switch the manifest to a new
    version naming them (one ``os.replace``); the lake is unchanged if this raises."""
    moved: list[Path] = []
    with lock(home, ".manifest.lock", 600) as held:
        if not held:
            raise TimeoutError(f"{home}: the manifest lock was not released in 600 s")
        old = read(home)
        files, dirs = dict(old.files), dict(old.dirs)
        superseded: list[str] = []
        try:
            for op, key, staged in unit.ops:
                if op == "put":
                    rel = f"{VERSIONS}/{key}/part-{unit_id}.parquet"
                    _move(staged, home / rel, moved)
                    chaos("move")
                    if key in files:
                        superseded.append(files[key])
                    files[key] = rel
                elif op == "delete":
                    for k in [k for k in files if k == key or k.startswith(key + "/")]:
                        superseded.append(files.pop(k))
                else:
                    rel = f"{VERSIONS}/{DIRS}/{key}/unit-{unit_id}"
                    _move(staged, home / rel, moved)
                    if key in dirs:
                        superseded.append(dirs[key])
                    dirs[key] = rel
            new_version = old.version + 1
            now = time.time()
            live = set(files.values()) | set(dirs.values())
            retired = dict(old.retired)
            for p in superseded:
                if p not in live:
                    retired[p] = (new_version, now)
            expired = [p for p, (v, t) in retired.items()
                       if v <= new_version - gc_keep() and t <= now - gc_grace() and p not in live]
            for p in expired:
                del retired[p]
            m = Manifest(new_version, files, dirs, retired)
            _write_atomic(home / MANIFEST, m.to_json(), before_replace=lambda: chaos("manifest"))
            chaos("committed")
        except BaseException:
            for p in moved:
                _remove(p)
            raise
    for p in expired:  # after the commit point: a kill here leaves orphans for sweep()
        _remove(home / p)
    return m


def _move(staged: Path | None, dest: Path, moved: list[Path]) -> None:
    assert staged is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest)
    moved.append(dest)


def _write_atomic(path: Path, text: str, before_replace: Callable[[], None] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def sweep(home: Path) -> int:
    """Delete files and folder versions in the store that the manifest does not name (a
    killed writer's, or expired ones a kill kept from being deleted) once older than the
    grace time; returns how many. Writers only (under the writer lock)."""
    m = read(home)
    named = set(m.files.values()) | set(m.dirs.values()) | set(m.retired)
    cutoff = time.time() - gc_grace()
    root = home / VERSIONS
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        descend = []
        for name in dirnames:
            p = d / name
            if name.startswith("unit-") or d == root / "_legacy":  # one folder version
                if p.relative_to(home).as_posix() not in named and _older(p, cutoff):
                    shutil.rmtree(p, ignore_errors=True)
                    n += 1
            else:
                descend.append(name)
        dirnames[:] = descend
        for name in filenames:
            p = d / name
            if p.relative_to(home).as_posix() not in named and _older(p, cutoff):
                p.unlink(missing_ok=True)
                n += 1
    return n


def _older(p: Path, cutoff: float) -> bool:
    try:
        return p.lstat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------- migration
def migrate(home: Path, place: Callable[[Path, str, Path], tuple[str, str] | None]) -> None:
    """A home written before the version store: its ``part-0.parquet`` files become version 1.
    ``place(home, key, file)`` puts one into the store and returns (its key, its path relative
    to the home), or None to leave it out; idempotent."""
    if (home / MANIFEST).exists():
        return
    lake = home / "lake"
    parts = sorted(lake.rglob(PART_FILE)) if lake.exists() else []
    if not parts:
        return
    with lock(home, ".manifest.lock", 600) as held:
        if not held or (home / MANIFEST).exists():
            return
        files = {}
        for p in parts:
            got = place(home, p.parent.relative_to(lake).as_posix(), p)
            if got is not None:
                files[got[0]] = got[1]
        _write_atomic(home / MANIFEST, Manifest(1, files).to_json())


def clean_tmp(home: Path) -> None:
    """Remove the temporary files a kill left in the lake folder (link and manifest
    ``*.tmp``, never ``*.parquet``) and scratch catalogs older than the grace time."""
    with lock(home, ".sync.lock", 10) as held:
        if held and (home / "lake").exists():
            for p in (home / "lake").rglob("*.tmp"):
                p.unlink(missing_ok=True)
    cutoff = time.time() - gc_grace()
    for d in (home / ".catalog-tmp").glob("*"):
        if _older(d, cutoff):
            shutil.rmtree(d, ignore_errors=True)
