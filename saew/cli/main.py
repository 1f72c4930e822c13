"""``saew``: the command line. It wires the steps of ingest, compute, report and sql to storage.

Every step module defines ``add_arguments(parser)`` and ``run(args, ctx) -> str | None``
(the text to print on success) and imports its heavy dependencies lazily, so ``saew --help``
stays fast. ``BadInput`` anywhere leaves the lake untouched and exits 2 with one line on
stderr; a lock held past ``SAEW_LOCK_TIMEOUT`` exits 3.

Nothing reaches the user as a traceback that an input can cause: a usage error or a numeric
option out of its bounds (``cli.numbers``) is one line, exit 2; so are an input too deep
(RecursionError), too large (MemoryError, OverflowError) and a ``--home`` that is a file; an
operating-system error (a full disk, a permission) is one line, exit 1. Output to a pipe that
closed early (``saew query ... | head -1``) ends quietly with exit 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types

from saew.cli import numbers
from saew.cli.commands import STEPS, Command, build_parser, execute
from saew.errors import BadInput, LockBusy
from saew.storage.lake import resolve_home

COMMANDS: list[Command] = [
    Command(("demo",), "saew.cli.demo", "run the whole pipeline on the embedded default", False),
    Command(("init",), "saew.cli.init", "choose the home's storage engine: parquet (default) or ducklake", False),
    Command(("snapshots",), "saew.sql.snapshots", "list a DuckLake home's snapshots (id, time, command, run_id)", False),
    *STEPS,
]


def _one_line_error(self: argparse.ArgumentParser, message: str) -> None:
    """argparse's error, as one line: ``saew: error: <message> (see <prog> --help)``, exit 2."""
    print(f"saew: error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(2)


def parser() -> argparse.ArgumentParser:
    """The ``saew`` parser: the command table's, with bounded numbers and one-line errors."""
    p = numbers.bound(build_parser(COMMANDS))
    for sub in numbers.parsers(p):
        sub.error = types.MethodType(_one_line_error, sub)  # type: ignore[method-assign]
    return p


def check_home(home: str | None) -> None:
    """The home (``--home``, ``$SAEW_HOME`` or ./saew-home) is a directory or can become one."""
    path = resolve_home(home)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"lies under {p}, which is a file"
                raise BadInput(f"--home {path}: {what}, not a directory")
            return


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the exit flush cannot fail again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # an in-process stdout without a descriptor
        pass
    except Exception:  # io.UnsupportedOperation
        pass


def _fail(message: str, code: int) -> int:
    print(f"saew: error: {' '.join(message.split())[:500]}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    args = parser().parse_args(argv)
    t0 = time.time()
    try:
        check_home(getattr(args, "home", None))
        out = execute(args._words, args, COMMANDS)
    except BadInput as e:
        return _fail(str(e), 2)
    except LockBusy as e:
        return _fail(str(e), 3)
    except KeyboardInterrupt:
        print("saew: interrupted; nothing was written", file=sys.stderr)
        return 130
    except RecursionError:
        return _fail("the input is nested too deeply to process (RecursionError); nothing was written", 2)
    except MemoryError:
        return _fail("out of memory: the input is too large for this machine; nothing was written", 2)
    except OverflowError as e:
        return _fail(f"a number in the input is too large ({e}); nothing was written", 2)
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        return _fail(f"{e.strerror or e}{where}", 1)
    if out:
        try:
            print(out)
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
            return 0
    if os.environ.get("SAEW_TIMING"):
        print(f"[{' '.join(args._words)}: {time.time() - t0:.1f}s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
