"""The bounds of every numeric command-line argument, in one place.

``bound(parser)`` walks a parser and all its subparsers and gives each ``type=int`` and
``type=float`` argument a checked type: an integer must lie in ``INT_BOUNDS[option]`` (default
[0, 2^31 - 1]: layers, counts and sizes are the lake's INT, and none is negative), a float must
be finite and lie in ``FLOAT_BOUNDS[option]`` (default: any finite value). So ``--layer
99999999999``, ``--n-tokens 9223372036854775808`` or ``--tokens 1000000000000`` are refused by
argparse as one line naming the option (exit 2) before any step runs. A step module declares
``type=int`` as usual; its option gets its bound here.
"""
from __future__ import annotations

import argparse
import math

INT32_MAX = 2 ** 31 - 1
INT_DEFAULT = (0, INT32_MAX)
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "--seed": (0, 2 ** 32 - 1),          # numpy and torch seeds
    "--n-tokens": (0, 2 ** 53),          # a BIGINT count, exact in float64
    "--tokens": (1, INT32_MAX),
    "--k": (1, INT32_MAX),
    "--d-sae": (1, INT32_MAX),
    "--batch-size": (1, INT32_MAX),
    "--seq-len": (1, INT32_MAX),
    "--workers": (1, 4096),
    "--candidates": (1, INT32_MAX),
    "--top": (1, INT32_MAX),
    "--draws": (1, 100_000),
    "--steps": (1, INT32_MAX),
}
FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "--lr": (0.0, math.inf), "--l1": (0.0, math.inf), "--l0": (0.0, math.inf),
    "--epochs": (0.0, math.inf), "--resolution": (0.0, math.inf), "--min-dist": (0.0, math.inf),
    "--refine-min-dist": (0.0, math.inf),
    "--null-quantile": (0.0, 1.0), "--member-quantile": (0.0, 1.0), "--max-cluster-share": (0.0, 1.0),
    "--npmi-threshold": (-1.0, 1.0), "--pearson-threshold": (-1.0, 1.0),
}


def int_type(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi]."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:  # also a number of more than 4300 digits
            raise argparse.ArgumentTypeError(f"{s[:40]!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{s[:40]} is out of range [{lo}, {hi}]")
        return v
    parse.__name__ = "int"
    return parse


def float_type(lo: float, hi: float):
    """An argparse type: a finite number in [lo, hi]."""
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s[:40]!r} is not a number") from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{s[:40]} is not a finite number in [{lo:g}, {hi:g}]")
        return v
    parse.__name__ = "float"
    return parse


def parsers(p: argparse.ArgumentParser):
    """``p`` and every parser below it."""
    yield p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in {id(s): s for s in a.choices.values()}.values():
                yield from parsers(sub)


def bound(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every int and float option of ``parser`` (and its subparsers) its checked type."""
    for p in parsers(parser):
        for a in p._actions:
            name = max(a.option_strings, key=len) if a.option_strings else a.dest
            if a.type is int:
                a.type = int_type(*INT_BOUNDS.get(name, INT_DEFAULT))
            elif a.type is float:
                a.type = float_type(*FLOAT_BOUNDS.get(name, (-math.inf, math.inf)))
    return parser
