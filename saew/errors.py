"""Errors every command maps to an exit status."""
from __future__ import annotations


class BadInput(Exception):
    """Bad user input: the CLI prints the message as one line on stderr and exits 2.

    The message names the file or argument and what is wrong with it.
    Raising it anywhere inside a command discards everything that command staged.
    """


class LockBusy(Exception):
    """Another writing command holds the warehouse lock and did not release it in time."""
