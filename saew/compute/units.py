"""Units of work of a per-layer or per-layer-pair step (contract section 2): which of them an
interrupted earlier run of the same command already finished, and committing each one.

A step names its units (``layer_unit(3)`` = ``layer=3``, ``pair_unit(3, 4)`` = ``pair=3-4``),
asks ``Units(ctx, names)`` for the ones still to do (``todo``: after a failure or a kill, a
re-run with the same parameters does only the missing ones; ``Context.finished_units``, whose
key ignores where the units ran: ``--executor``, ``--workers``, ``--device``), computes them
through its executor (``compute.executor``) and calls ``units.commit(name)`` right after
writing each unit's rows, so everything written since the previous commit becomes one atomic
unit (``Lake.commit_unit``): a failure at unit 11 keeps units 0-10.
"""
from __future__ import annotations


def layer_unit(layer: int) -> str:
    return f"layer={int(layer)}"


def pair_unit(src_layer: int, dst_layer: int) -> str:
    return f"pair={int(src_layer)}-{int(dst_layer)}"


class Units:
    """The units of one run of a step: ``todo`` and ``skipped`` (in plan order), ``commit``."""

    def __init__(self, ctx, names: list[str]):
        self.lake = ctx.lake
        finished = set(ctx.finished_units()) if hasattr(ctx, "finished_units") else set()
        self.names = list(names)
        self.skipped = [u for u in self.names if u in finished]
        self.todo = [u for u in self.names if u not in finished]

    def commit(self, unit: str) -> None:
        """Everything written since the previous commit is ``unit``: committed now (inside the
        command's transaction; outside one, each write was committed already)."""
        fn = getattr(self.lake, "commit_unit", None)
        if fn is not None and getattr(self.lake, "_staging", None) is not None:
            fn(unit)

    def note(self) -> str:
        """A line for the step's output when an earlier run finished some units."""
        if not self.skipped:
            return ""
        more = " ..." if len(self.skipped) > 6 else ""
        return (f"  kept {len(self.skipped)} unit(s) an interrupted earlier run finished: "
                f"{', '.join(self.skipped[:6])}{more}")
