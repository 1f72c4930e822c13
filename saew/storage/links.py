"""The derived trees of the Parquet lake: ``<home>/lake/<table>/<partition>/part-0.parquet``
hard links to each partition's current data file and ``<home>/<folder>`` symlinks to the
current version folders, both made to match the manifest (:mod:`saew.storage.versions`).

Idempotent and redone by anyone: :func:`sync` after each commit (only what the unit changed,
:func:`sync_unit`, when the trees were in sync before it) and on the next open when a kill
interrupted it (stamp ``lake/.links-version``). With no command running, a raw
``read_parquet('<home>/lake/<table>/**/*.parquet', hive_partitioning = true)`` is the table.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from saew.storage.versions import (LINKS_STAMP, PART_FILE, VERSIONS, Manifest, Unit, _write_atomic,
                                   chaos, lock, read)


def synced(home: Path, m: Manifest) -> bool:
    try:
        return int((home / LINKS_STAMP).read_text()) == m.version
    except (FileNotFoundError, ValueError):
        return m.version == 0


def sync(home: Path, wait: float = 0.0) -> bool:
    """Make the table folders' ``part-0.parquet`` links and the version-folder symlinks match
    the manifest (idempotent; anyone may run it). Skipped (False) when another process is
    syncing and ``wait`` seconds pass."""
    if synced(home, read(home)):
        return True
    with lock(home, ".sync.lock", wait) as held:
        if not held:
            return False
        m = read(home)
        if synced(home, m):
            return True
        _sync_files(home, m)
        _sync_dirs(home, m)
        _write_atomic(home / LINKS_STAMP, str(m.version))
    chaos("synced")
    return True


def sync_unit(home: Path, m: Manifest, unit: Unit) -> bool:
    """After the commit of ``unit`` that made ``m``: redo only the links and folder symlinks
    that unit changed, when the derived trees were in sync with the manifest before it
    (stamp ``m.version - 1``). False (nothing done) otherwise, or while another process
    syncs: then :func:`sync` does the whole tree. O(what the unit wrote), not O(the lake)."""
    with lock(home, ".sync.lock", 0) as held:
        if not held:
            return False
        try:
            stamp = int((home / LINKS_STAMP).read_text())
        except (FileNotFoundError, ValueError):
            stamp = 0 if m.version == 1 else -1
        if stamp != m.version - 1 or read(home).version != m.version:
            return False
        lake = home / "lake"
        for op, key, _ in unit.ops:
            if op == "delete":
                base = lake / key
                for p in list(base.rglob(PART_FILE)) if base.is_dir() else []:
                    if p.parent.relative_to(lake).as_posix() not in m.files:
                        p.unlink(missing_ok=True)
                        _prune(p.parent, lake)
        for key in sorted({k for op, k, _ in unit.ops if op == "put"}):
            if key in m.files:
                _link(home / m.files[key], lake / key / PART_FILE)
        rels = {k for op, k, _ in unit.ops if op == "dir"}
        _sync_dirs(home, Manifest(m.version, {}, {k: v for k, v in m.dirs.items() if k in rels}))
        _write_atomic(home / LINKS_STAMP, str(m.version))
    chaos("synced")
    return True


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links are impossible), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".part-0.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    chaos("link")


def _sync_files(home: Path, m: Manifest) -> None:
    lake = home / "lake"
    have = {p.parent.relative_to(lake).as_posix(): p for p in lake.rglob(PART_FILE)}
    for key, rel in m.files.items():
        src, dst = home / rel, lake / key / PART_FILE
        if key in have and _same(src, dst):
            continue
        _link(src, dst)
    for key, p in have.items():
        if key not in m.files:
            p.unlink(missing_ok=True)
            _prune(p.parent, lake)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _prune(d: Path, stop: Path) -> None:
    """Remove empty folders from ``d`` up to (not including) ``stop``'s children."""
    while d != stop and d.parent != stop:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def _sync_dirs(home: Path, m: Manifest) -> None:
    for rel, vdir in m.dirs.items():
        dst = home / rel
        target = os.path.relpath(home / vdir, dst.parent)
        if dst.is_symlink() and os.readlink(dst) == target:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() and not dst.is_symlink():  # a folder from before the version store
            legacy = home / VERSIONS / "_legacy" / f"{rel.replace('/', '__')}-{uuid.uuid4().hex[:8]}"
            legacy.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dst, legacy)
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
        os.symlink(target, tmp)
        os.replace(tmp, dst)
