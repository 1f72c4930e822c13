"""Where the units of a per-layer or per-layer-pair step run: one interface, two engines.

A step plans its units (a layer, a layer pair), calls one pure module-level function per unit
(its inputs in, Arrow tables or numpy arrays out) through ``Executor.map``, and commits each
result as it arrives (``compute.units``). ``map(fn, jobs)`` yields ``fn(*job)`` for each job in
order, with at most ``workers`` jobs in flight (inputs are produced lazily, so memory stays
bounded); a job's exception is raised at its turn, after every earlier result was yielded.

* ``local`` (``--executor local``, the default): ``workers <= 1`` runs every job in this
  process; more workers are spawned processes (never forked: torch and numba thread pools do
  not survive a fork), each running one thread (``_init_worker``).
* ``ray`` (``--executor ray``): each job is a Ray Core task declaring ``num_cpus=1`` and
  ``num_gpus=1`` when the step's device is a CUDA GPU, on the cluster at ``--ray-address``
  or on a new local one (``ray.init(address="local", num_cpus=<CPU count>)``) started on
  first use and shut down when the process exits (so ``saew demo`` pays its start-up once).
  On a DuckLake home, a task of a step using ``Units.map_commit`` commits its unit's rows
  itself (``commits_in_task``). The workers are started (a warm-up task each: the thread
  settings and the common imports) as soon as the executor exists, while the step plans.
  A task's own exception is re-raised as itself (a ``BadInput`` stays one line). Ray is an
  optional extra: without it ``--executor ray`` is a one-line ``BadInput``.

``map(..., chained=True)``: each job may reuse what the one before it built in the same process
(``correlate``: a pair's destination layer is the next pair's source). Run in this process that
is the serial order; under Ray the jobs are split into ``workers`` contiguous chains, each ONE
task that yields its jobs' results as they finish (a Ray streaming generator), so consecutive
jobs share a process and every result still reaches the driver, in order, as soon as its turn
comes; the jobs are listed up front there (keep their inputs small: paths, labels). A local pool
runs chained jobs one per task, as ``map``.

``background(fn, *args)`` runs one more job beside a ``map`` (e.g. one long Leiden run), in its
own process (local) or task (ray); ``enabled=False`` runs it in this process when its result
is asked for. The results never depend on the engine or the worker count: every unit is the
same function of the same inputs, each worker single-threaded as in the serial run's units.
"""
from __future__ import annotations

import atexit
import contextlib
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from saew.errors import BadInput

ENGINES = ("local", "ray")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
RAY_INSTALL = "pip install -e '.[ray]'"
WARM_MAX = 64   # Ray workers warmed when an executor starts (its first tasks skip their start-up)


def default_workers(n_jobs: int) -> int:
    """min(2, CPU count, jobs), at least 1: the 2-core machine's second core."""
    return max(1, min(2, os.cpu_count() or 1, n_jobs))


def _init_worker() -> None:
    """A worker's settings: one thread per library, no progress bar (the parent shows one).

    The variables only reach libraries loaded after them; a spawned worker has already
    imported its parent's main module (the ``saew`` script imports numpy, hence OpenBLAS with
    one thread per core), so the pools already loaded are limited at run time too
    (threadpoolctl; numba's). Without that, two workers ran four spinning OpenBLAS threads on
    two cores: ``saew cluster`` on the smollm2 demo took 320 s instead of about 100 s.
    """
    import sys

    for var in THREAD_VARS:
        os.environ[var] = "1"
    os.environ["SAEW_PROGRESS"] = "0"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)          # every BLAS / OpenMP pool loaded so far, for the process
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _writable(x: Any) -> Any:
    """``x`` with its read-only numpy arrays copied (a Ray task's numpy arguments are read-only
    views of the object store; the steps' code may write to its inputs, as in one process):
    arrays, tuples and lists of them, and the array fields of dataclasses (e.g. SAEParams)."""
    import dataclasses

    import numpy as np

    if isinstance(x, np.ndarray):
        return x if x.flags.writeable else x.copy()
    if isinstance(x, (tuple, list)):
        return type(x)(_writable(v) for v in x) if type(x) in (tuple, list) else x
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        changed = {f.name: _writable(getattr(x, f.name)) for f in dataclasses.fields(x)
                   if isinstance(getattr(x, f.name), np.ndarray)}
        if any(changed[k] is not getattr(x, k) for k in changed):
            import copy

            x = copy.copy(x)
            for k, v in changed.items():
                object.__setattr__(x, k, v)
    return x


def _in_worker(fn: Callable, *args) -> Any:
    """A Ray task's body: the worker settings, writable inputs, then the job."""
    _init_worker()
    return fn(*(_writable(a) for a in args))


def _warm_up() -> None:
    """A task that only imports what every unit needs (``_in_worker`` has set the threads and
    imported torch by then), so the first real task finds a warm worker."""
    import duckdb  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import saew.storage.lake  # noqa: F401


def _in_worker_chain(fn: Callable, jobs: list[tuple]) -> Iterator[Any]:
    """A chained Ray task's body: the jobs one after another in this process, each result
    yielded as it is done."""
    _init_worker()
    for job in jobs:
        yield fn(*(_writable(a) for a in job))


def chains(n_jobs: int, workers: int) -> list[range]:
    """``workers`` contiguous runs of job indices, as equal as they can be (longer ones first)."""
    w = max(1, min(workers, n_jobs))
    q, r = divmod(n_jobs, w)
    bounds = [0]
    for i in range(w):
        bounds.append(bounds[-1] + q + (i < r))
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


@dataclass(frozen=True)
class ExecutorConfig:
    """``--executor``, ``--workers``, ``--ray-address`` and the step's resolved ``--device``."""
    engine: str = "local"
    workers: int | None = None     # None: default_workers(units) (local), the cluster's CPUs (ray)
    ray_address: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise BadInput(f"--executor {self.engine!r}: expected one of {', '.join(ENGINES)}")
        if self.workers is not None and self.workers < 1:
            raise BadInput(f"--workers {self.workers}: must be at least 1")
        if self.ray_address is not None and self.engine != "ray":
            raise BadInput(f"--ray-address {self.ray_address}: only with --executor ray")


class _Later:
    """A job run in this process when its result is first asked for; kept, as a Future keeps it."""

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args, self.value, self.done = fn, args, None, False

    def result(self) -> Any:
        if not self.done:
            self.value, self.done = self.fn(*self.args), True
        return self.value


class Executor:
    """The engine of one step (``executor(cfg)``); ``map`` and ``background`` as above."""

    def __init__(self, cfg: ExecutorConfig):
        self.cfg = cfg

    def workers(self, n_jobs: int) -> int:
        w = default_workers(n_jobs) if self.cfg.workers is None else self.cfg.workers
        return max(1, min(w, max(1, n_jobs)))

    def in_process(self, n_jobs: int) -> bool:
        """Whether ``map`` over ``n_jobs`` runs its jobs in this process (a unit may then reuse
        what the previous one built)."""
        return self.workers(n_jobs) <= 1

    def chains_share_process(self, n_jobs: int) -> bool:
        """Whether ``map(chained=True)`` runs each job in the process of the job before it
        (its first job's excepted): in this process, or in a Ray chain."""
        return self.in_process(n_jobs)

    def commits_in_task(self, lake) -> bool:
        """Whether a unit's task commits its own rows (``compute.units.commit_in_task``): no
        for local workers (the driver commits)."""
        return False

    def map(self, fn: Callable, jobs: Iterable[tuple], n_jobs: int, chained: bool = False) -> Iterator:
        workers = self.workers(n_jobs)
        if workers <= 1:
            for job in jobs:
                yield fn(*job)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            yield from _ordered((pool.submit(fn, *job) for job in jobs), workers,
                                lambda f: f.result())

    @contextlib.contextmanager
    def background(self, fn: Callable, *args, enabled: bool = True) -> Iterator[Any]:
        """``with ex.background(fn, *args) as job: ...; job.result()``: fn(*args) in one more
        single-threaded worker while the caller goes on; ``job.result()`` waits for it (raising
        what it raised). On leaving the block the worker is shut down."""
        if not enabled:
            yield _Later(fn, args)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            yield pool.submit(fn, *args)


def _ordered(futures: Iterable, in_flight: int, get: Callable) -> Iterator:
    """Results of ``futures`` (submitted lazily as the iterator is consumed) in order, with at
    most ``in_flight`` submitted and not yet yielded."""
    queue: deque = deque()
    for fut in futures:
        queue.append(fut)
        if len(queue) >= in_flight:
            yield get(queue.popleft())
    while queue:
        yield get(queue.popleft())


class RayExecutor(Executor):
    """Ray Core tasks (see the module docstring)."""

    def __init__(self, cfg: ExecutorConfig):
        super().__init__(cfg)
        self.ray = ensure_ray(cfg.ray_address)
        self.gpus = 1 if cfg.device.startswith("cuda") else 0
        # start the workers now, while the driver plans: a worker's start and its imports (torch
        # in _init_worker, pyarrow, duckdb, the lake) took 5 s of a first task on 2 cores
        self._warming = [self._remote().remote(_warm_up) for _ in range(self.workers(WARM_MAX))]

    def workers(self, n_jobs: int) -> int:
        w = self.cfg.workers
        if w is None:
            w = int(self.ray.cluster_resources().get("CPU", 1))
        return max(1, min(w, max(1, n_jobs)))

    def in_process(self, n_jobs: int) -> bool:
        return False

    def chains_share_process(self, n_jobs: int) -> bool:
        return True

    def commits_in_task(self, lake) -> bool:
        """Yes on a DuckLake home: each task commits its unit as one snapshot of its own (a
        Postgres catalog takes commits from many machines); the Parquet lake's manifest has
        one writer, the driver."""
        return getattr(lake, "engine", None) is not None

    def _remote(self):
        return self.ray.remote(num_cpus=1, num_gpus=self.gpus, max_retries=0)(_in_worker)

    def _get(self, ref) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:   # the task's own exception, as itself
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def map(self, fn: Callable, jobs: Iterable[tuple], n_jobs: int, chained: bool = False) -> Iterator:
        workers = self.workers(n_jobs)
        if chained and workers > 1:
            jobs = list(jobs)
            task = self.ray.remote(num_cpus=1, num_gpus=self.gpus, max_retries=0)(_in_worker_chain)
            gens = [task.remote(fn, [jobs[i] for i in c]) for c in chains(len(jobs), workers)]
            try:
                for gen in gens:
                    for ref in gen:
                        yield self._get(ref)
            finally:
                for gen in gens:
                    self.ray.cancel(gen, force=True)   # a no-op once the task has finished
            return
        task = self._remote()
        yield from _ordered((task.remote(fn, *job) for job in jobs), workers, self._get)

    @contextlib.contextmanager
    def background(self, fn: Callable, *args, enabled: bool = True) -> Iterator[Any]:
        if not enabled:
            yield _Later(fn, args)
            return
        ref = self._remote().remote(fn, *args)
        try:
            yield _RayJob(self, ref)
        finally:
            self.ray.cancel(ref, force=True)   # a no-op once the task has finished


class _RayJob:
    def __init__(self, ex: RayExecutor, ref):
        self.ex, self.ref = ex, ref

    def result(self) -> Any:
        return self.ex._get(self.ref)


def executor(cfg: ExecutorConfig) -> Executor:
    """The engine ``cfg.engine`` names."""
    return RayExecutor(cfg) if cfg.engine == "ray" else Executor(cfg)


# ------------------------------------------------------------------ ray
_RAY_STARTED: list[bool] = []


def _probe(address: str, where: str, timeout: float = 10.0) -> None:
    """One ``BadInput`` line when ``host:port`` (also of ``ray://host:port``) takes no TCP
    connection: Ray itself retries an unreachable GCS for minutes. ``auto`` is left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise BadInput(f"{where}: cannot join a Ray cluster there ({e.strerror or type(e).__name__}; "
                       f"is the head node up? `ray start --head` prints its address)") from None


def ensure_ray(address: str | None = None):
    """The ``ray`` module, connected: to ``address`` (else ``$RAY_ADDRESS``) when given, else to
    a new local cluster of this machine's CPUs started here once (shut down at exit); reused
    when already connected (e.g. by a test fixture). One ``BadInput`` line when Ray is missing
    or unreachable."""
    where = f"--ray-address {address}" if address else "--executor ray"
    if not address and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
        where = f"--executor ray: RAY_ADDRESS={address}"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise BadInput(f"--executor ray: Ray is not installed; {RAY_INSTALL}") from None
    if ray.is_initialized():
        return ray
    env = {"env_vars": {**{v: "1" for v in THREAD_VARS}, "SAEW_PROGRESS": "0"}}
    import logging

    if address:
        _probe(address, where)
    try:
        if address:
            ray.init(address=address, runtime_env=env, logging_level=logging.ERROR,
                     log_to_driver=False)
        else:
            # address 'local': a new cluster, never one that /tmp/ray/ray_current_cluster names (a
            # plain ray.init() joins the machine's latest cluster, and dies with it)
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, runtime_env=env,
                     logging_level=logging.ERROR, log_to_driver=False)
    except Exception as e:  # an unreachable address, a cluster that will not start
        msg = str(e).strip().splitlines()
        raise BadInput(f"{where}: cannot start or join a Ray cluster ({type(e).__name__}: "
                       f"{msg[0] if msg else ''})") from None
    if not _RAY_STARTED:
        atexit.register(ray.shutdown)
        _RAY_STARTED.append(True)
    return ray
