"""Not implemented yet."""
from __future__ import annotations

from warehouse.errors import BadInput


def add_arguments(p) -> None:
    pass


def run(args, ctx):
    raise BadInput(f"saew {' '.join(args._words)}: not implemented yet")
