"""Per-layer work in worker processes: the 2-core machine's second core for steps whose
inner loops are single-threaded (a seeded UMAP, an SAE's small sparse training steps).

``ordered_map(fn, jobs, workers)`` yields ``fn(*job)`` for each job in order, with at most
``workers`` jobs in flight (so inputs are produced lazily and memory stays bounded).
``background(fn, *args)`` runs one more job beside them, in its own process. Workers
are spawned (never forked: torch and numba thread pools do not survive a fork) and run one
thread each; ``workers <= 1`` runs everything in this process.
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def default_workers(n_jobs: int) -> int:
    return max(1, min(2, os.cpu_count() or 1, n_jobs))


def _init_worker() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"
    os.environ["SAEW_PROGRESS"] = "0"   # the parent shows one bar over the jobs
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def ordered_map(fn: Callable, jobs: Iterable[tuple], workers: int = 1) -> Iterator:
    if workers <= 1:
        for job in jobs:
            yield fn(*job)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        queue: deque = deque()
        for job in jobs:
            queue.append(pool.submit(fn, *job))
            if len(queue) >= workers:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


class _Later:
    """``background`` without a process: the call runs when its result is asked for."""

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args = fn, args

    def result(self) -> Any:
        return self.fn(*self.args)


@contextlib.contextmanager
def background(fn: Callable, *args, enabled: bool = True) -> Iterator[Any]:
    """``with background(fn, *args) as job: ...; job.result()``: fn(*args) runs in one spawned
    single-threaded worker while the caller goes on (e.g. with its own ``ordered_map``), and
    ``job.result()`` waits for it (raising what it raised). ``enabled=False`` runs it in this
    process at ``job.result()`` instead. On leaving the block the worker is shut down."""
    if not enabled:
        yield _Later(fn, args)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
        yield pool.submit(fn, *args)
