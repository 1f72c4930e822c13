"""``saew``: the command line. It wires the steps of ingest, compute, report and sql to storage.

Every step module defines ``add_arguments(parser)`` and ``run(args, ctx) -> str | None``
(the text to print on success) and imports its heavy dependencies lazily, so ``saew --help``
stays fast. ``BadInput`` anywhere leaves the lake untouched and exits 2 with one line on
stderr; a lock held past ``SAEW_LOCK_TIMEOUT`` exits 3.
"""
from __future__ import annotations

import os
import sys
import time

from saew.cli.commands import STEPS, Command, build_parser, execute
from saew.errors import BadInput, LockBusy

COMMANDS: list[Command] = [
    Command(("demo",), "saew.cli.demo", "run the whole pipeline on the embedded default", False),
    *STEPS,
]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    parser = build_parser(COMMANDS)
    args = parser.parse_args(argv)
    t0 = time.time()
    try:
        out = execute(args._words, args, COMMANDS)
    except BadInput as e:
        print(f"saew: error: {e}", file=sys.stderr)
        return 2
    except LockBusy as e:
        print(f"saew: error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("saew: interrupted; nothing was written", file=sys.stderr)
        return 130
    if out:
        print(out)
    if os.environ.get("SAEW_TIMING"):
        print(f"[{' '.join(args._words)}: {time.time() - t0:.1f}s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
