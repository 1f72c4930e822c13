"""A throwaway Postgres server for tests: ``initdb`` + ``pg_ctl`` on 127.0.0.1.

``pg_dsn`` (session-scoped) starts one PostgreSQL (15 by preference: Debian's
``/usr/lib/postgresql/<v>/bin``, else ``initdb`` on PATH) in a fresh temporary data directory,
listening on 127.0.0.1 at a free port with ``trust`` authentication, and yields its DSN in the
form ``saew init --catalog`` takes::

    postgres:dbname=postgres host=127.0.0.1 port=54321 user=postgres

``pg_catalog`` (per test) creates a fresh database on that server and yields its DSN, so tests
do not see each other's catalogs. ``initdb`` refuses to run as root, and this machine and CI run
as root: then the server runs as the ``postgres`` system user Debian's package creates (through
``runuser -u postgres --``, else ``su postgres -c``), and the temporary directory is made theirs.
The server is stopped and its directory removed at the end of the session (also at interpreter
exit if the session dies first). Where Postgres cannot be had (no binaries; root without a
``postgres`` user) the tests that use it are skipped, with the reason. ``.ci/run`` installs
Debian's ``postgresql`` where it is absent.

Test modules import the fixtures: ``from tests.pg import pg_catalog, pg_dsn  # noqa: F401``.
"""
from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_VERSIONS = ("15", "16", "17", "14")  # preference order of /usr/lib/postgresql/<v>/bin
SERVICE_USER = "postgres"  # the system user Debian's postgresql package creates
SUPERUSER = "postgres"  # the database superuser initdb creates (-U)
HOST = "127.0.0.1"
# a test server: no durability, quick start and stop, room for many concurrent writers
SERVER_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off",
                  "max_connections=200", "shared_buffers=32MB")


@dataclass(frozen=True)
class PgServer:
    """A running server: where it listens and the DSNs of its databases."""

    bin_dir: Path
    root: Path
    port: int
    prefix: tuple[str, ...]  # the command prefix that runs a tool as the service user

    def dsn(self, dbname: str = "postgres") -> str:
        """The libpq DSN of database ``dbname`` (``dbname=... host=... port=... user=...``)."""
        return f"dbname={dbname} host={HOST} port={self.port} user={SUPERUSER}"

    def catalog(self, dbname: str = "postgres") -> str:
        """The catalog DSN ``saew init --catalog`` and ``ATTACH 'ducklake:...'`` take."""
        return f"postgres:{self.dsn(dbname)}"

    def createdb(self, dbname: str) -> str:
        """Create database ``dbname``; its catalog DSN."""
        _run([*self.prefix, str(self.bin_dir / "createdb"), "-h", HOST, "-p", str(self.port),
              "-U", SUPERUSER, dbname])
        return self.catalog(dbname)


def find_bin_dir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``: Debian's versioned one, else the one on PATH."""
    for v in PG_VERSIONS:
        d = Path(f"/usr/lib/postgresql/{v}/bin")
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


def user_prefix() -> tuple[tuple[str, ...], int | None, str | None]:
    """(command prefix, uid to own the data directory, reason it cannot run) for this user.

    As root: run as the ``postgres`` system user (initdb refuses root)."""
    if os.geteuid() != 0:
        return (), None, None
    try:
        uid = pwd.getpwnam(SERVICE_USER).pw_uid
    except KeyError:
        return (), None, f"running as root and there is no {SERVICE_USER!r} system user for initdb"
    if shutil.which("runuser"):
        return ("runuser", "-u", SERVICE_USER, "--"), uid, None
    if shutil.which("su"):
        return ("_su",), uid, None
    return (), None, "running as root and neither runuser nor su is available"


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    if cmd and cmd[0] == "_su":  # su takes one shell command string
        cmd = ["su", SERVICE_USER, "-s", "/bin/sh", "-c", shlex.join(cmd[1:])]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(bin_dir: Path, prefix: tuple[str, ...], uid: int | None) -> PgServer:
    """initdb a fresh temporary cluster and start it on a free port (three tries at a port)."""
    root = Path(tempfile.mkdtemp(prefix="saew-pg-"))
    if uid is not None:
        os.chown(root, uid, -1)
    data = root / "data"
    _run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
          "-E", "UTF8", "--no-sync", "--no-instructions"])
    opts = " ".join(f"-c {o}" for o in SERVER_OPTIONS)
    last: Exception | None = None
    for _ in range(3):
        port = free_port()
        try:
            _run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                  "-t", "60", "-o", f"-c listen_addresses={HOST} -p {port} -k {root} {opts}", "start"])
            return PgServer(bin_dir=bin_dir, root=root, port=port, prefix=prefix)
        except RuntimeError as e:  # most likely the port was taken between free_port and start
            last = e
    log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").exists() else ""
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"postgres did not start: {last}\n{log}")


def stop(server: PgServer) -> None:
    """Stop the server (immediate: nothing to keep) and remove its directory."""
    data = server.root / "data"
    if (data / "postmaster.pid").exists():
        try:
            _run([*server.prefix, str(server.bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                  "-w", "stop"])
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
    shutil.rmtree(server.root, ignore_errors=True)


def unavailable() -> str | None:
    """Why a Postgres server cannot be had here, or None."""
    if find_bin_dir() is None:
        return ("PostgreSQL not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH); "
                ".ci/run installs Debian's postgresql")
    return user_prefix()[2]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    prefix, uid, _ = user_prefix()
    server = start(find_bin_dir(), prefix, uid)  # type: ignore[arg-type]
    atexit.register(stop, server)  # if the session dies before the finaliser
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PgServer) -> str:
    """The server's default database as a catalog DSN: ``postgres:dbname=postgres host=...``."""
    return pg_server.catalog()


_db_names = itertools.count()


@pytest.fixture
def pg_catalog(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server, as a catalog DSN."""
    return pg_server.createdb(f"t{os.getpid()}_{next(_db_names)}")
