"""Units of work of a per-layer or per-layer-pair step (contract section 2): which of them an
interrupted earlier run of the same command already finished, and committing each one.

A step names its units (``layer_unit(3)`` = ``layer=3``, ``pair_unit(3, 4)`` = ``pair=3-4``),
asks ``Units(ctx, names)`` for the ones still to do (``todo``: after a failure or a kill, a
re-run with the same parameters does only the missing ones; ``Context.finished_units``, whose
key ignores where the units ran: ``--executor``, ``--workers``, ``--device``), computes them
through its executor (``compute.executor``) and calls ``units.commit(name)`` right after
writing each unit's rows, so everything written since the previous commit becomes one atomic
unit (``Lake.commit_unit``): a failure at unit 11 keeps units 0-10.

``Units.map_commit(ex, fn, jobs, write)`` is that loop for a step whose unit's rows are written
by one plain function ``write(lake, unit, result) -> summary``. Where the executor lets its tasks
commit (``Executor.commits_in_task``: Ray tasks on a DuckLake home), each task runs
``fn(*job)``, then ``write`` into its own DuckLake transaction: the unit's rows are one snapshot
committed from the task (``commit_in_task``), and only the small summary comes back; the
driver then records the unit in its ``runs`` row. Elsewhere the driver writes and commits.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator


def layer_unit(layer: int) -> str:
    return f"layer={int(layer)}"


def pair_unit(src_layer: int, dst_layer: int) -> str:
    return f"pair={int(src_layer)}-{int(dst_layer)}"


def unit_layers(unit: str) -> tuple[int, ...]:
    """The layers a unit names: ``layer=3`` -> (3,), ``pair=3-4`` -> (3, 4)."""
    kind, _, rest = unit.partition("=")
    if kind == "pair":
        a, _, b = rest.partition("-")   # layers are >= 0
        return int(a), int(b)
    return (int(rest.split("/")[0]),)


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

    def map_commit(self, ex, fn: Callable, jobs: Iterable[tuple], write: Callable,
                   chained: bool = False) -> Iterator[tuple[str, Any]]:
        """(unit, ``write``'s summary) for each unit of ``todo`` and its job, in order, each unit
        committed before it is yielded (see the module docstring); ``chained``: as
        ``Executor.map``'s (consecutive units may share what they built)."""
        names = self.todo
        if ex.commits_in_task(self.lake) and getattr(self.lake, "_run_id", None) is not None:
            run = self.lake._run
            task_jobs = ((fn, write, str(self.lake.home), self.lake._run_id, run.command if run else "write",
                          name, tuple(job)) for name, job in zip(names, jobs))
            results = ex.map(commit_in_task, task_jobs, len(names), chained=chained)
            for name, summary in zip(names, results):
                self.commit(name)   # the runs row: the task committed the unit's rows
                yield name, summary
            return
        for name, result in zip(names, ex.map(fn, jobs, len(names), chained=chained)):
            summary = write(self.lake, name, result)
            self.commit(name)
            yield name, summary

    def note(self) -> str:
        """A line for the step's output when an earlier run finished some units."""
        if not self.skipped:
            return ""
        more = " ..." if len(self.skipped) > 6 else ""
        return (f"  kept {len(self.skipped)} unit(s) an interrupted earlier run finished: "
                f"{', '.join(self.skipped[:6])}{more}")


def commit_in_task(fn: Callable, write: Callable, home: str, run_id: str, command: str, unit: str,
                   job: tuple) -> Any:
    """A task's unit, committed by the task: ``fn(*job)``, then ``write(lake, unit, result)`` in one
    transaction of its own on the home's DuckLake (one snapshot labelled with the driver's
    ``command`` and ``run_id``; no ``runs`` row, which is the driver's). Returns the summary."""
    from datetime import datetime, timezone

    from saew.storage.lake import Lake, RunInfo

    result = fn(*job)
    lake = Lake(home)
    run = RunInfo(command=command, params="{}", version="", of_run=run_id,
                  started_at=datetime.now(timezone.utc).replace(tzinfo=None))
    slug = unit.replace("/", "_").replace("=", "-")
    with lake.transaction(run_id=f"{run_id}.{slug}", run=run):
        summary = write(lake, unit, result)
        lake.commit_unit(unit)
    return summary
