"""The options every per-layer step shares: ``--executor local|ray [--ray-address ADDR]``,
``--workers N`` and ``--device auto|cpu|cuda|mps`` (contract section 6), in one place.

``add_executor_arguments(p)`` and ``add_device_argument(p)`` declare them; ``executor_from_args``
turns them into the step's ``compute.executor.Executor``; ``resolve_device`` turns ``--device``
into a torch device name:

    auto -> cuda if torch.cuda.is_available() else mps if torch.backends.mps.is_available()
            else cpu

(with ``--executor ray``, ``auto`` and ``cuda`` look at the cluster's GPUs instead of this
machine's, since the tasks run there). ``cpu`` runs exactly the code it ran before these
options existed, so CPU results are bit-for-bit the same.
"""
from __future__ import annotations

from saew.compute.executor import ENGINES, Executor, ExecutorConfig, executor
from saew.errors import BadInput

DEVICES = ("auto", "cpu", "cuda", "mps")
# every option this module declares (``saew demo`` passes them to the steps that take them)
OPTION_NAMES = ("--executor", "--ray-address", "--workers", "--device")


def add_executor_arguments(p, what: str = "units", local_workers: int | None = None) -> None:
    """``--executor``, ``--ray-address``, ``--workers`` on a step's parser; ``what`` names the
    step's units in the help (layers, layer pairs); ``local_workers``: the step's local default
    (as the step passes it to ``executor_from_args``)."""
    local = "1, this process" if local_workers == 1 else "min(2, CPU count, units)"
    p.add_argument("--executor", choices=ENGINES, default="local",
                   help=f"where the {what} run: local (default: this process, or --workers "
                        "spawned single-threaded processes) or ray (Ray Core tasks; on a DuckLake "
                        "home each task commits its own unit; needs pip install -e '.[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="--executor ray: join this Ray cluster (e.g. ray://host:10001 or auto; "
                        "default: $RAY_ADDRESS if set, else start a new local one)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"{what} in flight at once, single-threaded when more than one (default: local "
                        f"{local}; ray the cluster's CPUs); results do not depend on it")


def add_device_argument(p) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="torch device: auto (default: cuda if torch sees a GPU, else mps, else "
                        "cpu), cpu, cuda or mps")


def resolve_device(name: str, gpus: float | None = None) -> str:
    """``--device`` -> ``cpu``, ``cuda`` or ``mps``. ``gpus``: the GPUs of the Ray cluster the
    tasks run on (None: this machine's, as torch sees them)."""
    if name not in DEVICES:
        raise BadInput(f"--device {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "cpu":
        return "cpu"
    import torch

    cuda = torch.cuda.is_available() if gpus is None else gpus > 0
    mps = gpus is None and _mps_available(torch)
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        where = "the Ray cluster has no GPU" if gpus is not None else \
            "torch sees no CUDA GPU here (torch.cuda.is_available() is False)"
        raise BadInput(f"--device cuda: {where}; use --device cpu or auto")
    if name == "mps" and not mps:
        raise BadInput("--device mps: torch sees no Apple MPS device here; use --device cpu or auto")
    return name


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def executor_config(args, device: str = "cpu", local_workers: int | None = None) -> ExecutorConfig:
    """The executor options of a parsed command line (absent ones at their defaults), with the
    step's resolved device. ``local_workers``: the step's default ``--workers`` on the local
    engine (1: in this process, for steps whose inner loops already use every core through
    BLAS or numba threads; None: min(2, CPU count, units))."""
    engine = getattr(args, "executor", None) or "local"
    workers = getattr(args, "workers", None)
    if workers is None and engine == "local":
        workers = local_workers
    return ExecutorConfig(engine=engine, workers=workers,
                          ray_address=getattr(args, "ray_address", None), device=device)


def step_device(args) -> str:
    """The resolved ``--device`` of a step (``cpu`` when it has none). With ``--executor ray``
    the cluster's GPUs decide ``auto`` and check ``cuda``."""
    name = getattr(args, "device", None) or "cpu"
    if name == "cpu":
        return "cpu"
    if getattr(args, "executor", "local") == "ray" and name in ("auto", "cuda"):
        from saew.compute.executor import ensure_ray

        ray = ensure_ray(getattr(args, "ray_address", None))
        return resolve_device(name, gpus=float(ray.cluster_resources().get("GPU", 0)))
    return resolve_device(name)


def executor_from_args(args, device: str | None = None, local_workers: int | None = None) -> Executor:
    """The step's engine. ``device``: the resolved ``--device`` (default: ``step_device``);
    ``local_workers`` as in ``executor_config``."""
    cfg = executor_config(args, step_device(args) if device is None else device, local_workers)
    return executor(cfg)
