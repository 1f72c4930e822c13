"""compute.executor, compute.options, compute.units: the local engine (in-process and spawned
workers), one-line errors for bad options and a missing Ray, device resolution, and units that
commit one by one so a failed run keeps its finished units and a re-run does only the rest."""
from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from saew.compute.executor import Executor, ExecutorConfig, default_workers, executor
from saew.compute.options import executor_config, resolve_device, step_device
from saew.errors import BadInput
from tests.factories import make_sae, put_sae

R = "r"


def _where(x: int) -> tuple[int, int]:
    if x < 0:
        raise ValueError("negative")
    return x * 2, os.getpid()


def _square_or_fail(x: int) -> int:
    if x == 2:
        raise ValueError("unit 2 fails")
    return x * x


@pytest.mark.parametrize("enabled", [True, False])
def test_background_returns_the_result_and_raises_the_error(enabled):
    ex = Executor(ExecutorConfig())
    with ex.background(_where, 21, enabled=enabled) as job:
        value, pid = job.result()
    assert value == 42 and (pid != os.getpid()) == enabled
    with pytest.raises(ValueError, match="negative"):
        with ex.background(_where, -1, enabled=enabled) as job:
            job.result()


@pytest.mark.parametrize("workers", [1, 2])
def test_map_yields_in_order_and_raises_at_the_failing_job(workers):
    ex = executor(ExecutorConfig(workers=workers))
    assert ex.in_process(5) == (workers == 1)
    out = list(ex.map(_where, ((i,) for i in range(5)), 5))
    assert [v for v, _ in out] == [0, 2, 4, 6, 8]
    assert (os.getpid() in {pid for _, pid in out}) == (workers == 1)
    got = []
    with pytest.raises(ValueError, match="unit 2 fails"):
        for v in ex.map(_square_or_fail, ((i,) for i in range(5)), 5):
            got.append(v)
    assert got == [0, 1]     # every unit before the failing one was yielded (and committed)


def test_chains_are_contiguous_and_balanced():
    from saew.compute.executor import chains

    assert chains(11, 2) == [range(0, 6), range(6, 11)]
    assert chains(5, 3) == [range(0, 2), range(2, 4), range(4, 5)]
    assert chains(2, 4) == [range(0, 1), range(1, 2)]
    assert chains(0, 2) == [range(0, 0)]
    ex = executor(ExecutorConfig(workers=1))
    assert ex.chains_share_process(5)
    assert [v for v, _ in ex.map(_where, ((i,) for i in range(3)), 3, chained=True)] == [0, 2, 4]


def test_worker_counts():
    assert default_workers(0) == 1 and default_workers(1) == 1
    assert default_workers(10) == min(2, os.cpu_count() or 1)
    ex = executor(ExecutorConfig(workers=8))
    assert ex.workers(3) == 3 and ex.workers(0) == 1
    # a step that runs its units in this process by default (match, transport, ...)
    args = SimpleNamespace(executor="local", workers=None, ray_address=None)
    assert executor_config(args, local_workers=1).workers == 1
    assert executor_config(args).workers is None
    assert executor_config(SimpleNamespace(executor="local", workers=2), local_workers=1).workers == 2


@pytest.mark.parametrize("cfg, message", [
    (dict(workers=0), "--workers 0: must be at least 1"),
    (dict(engine="spark"), "--executor 'spark'"),
    (dict(ray_address="auto"), "--ray-address auto: only with --executor ray"),
])
def test_bad_executor_options_are_one_line(cfg, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        ExecutorConfig(**cfg)


def test_ray_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)    # import ray -> ImportError
    with pytest.raises(BadInput) as e:
        executor(ExecutorConfig(engine="ray"))
    assert str(e.value) == "--executor ray: Ray is not installed; pip install -e '.[ray]'"


@pytest.mark.parametrize("how", ["option", "env"])
def test_an_unreachable_ray_address_is_one_line_at_once(saew, lake, monkeypatch, how):
    """--ray-address (or $RAY_ADDRESS) where nothing listens: exit 2 in seconds, not Ray's
    minutes of retries; nothing written."""
    import socket

    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray cluster of another test is connected")
    with socket.socket() as sk:     # a port nothing listens on once closed
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    put_sae(lake, R, 0, make_sae(seed=0))
    put_sae(lake, R, 1, make_sae(seed=1))
    before = lake.query("SELECT count(*) AS n FROM runs").column("n")[0].as_py()
    extra = ["--ray-address", f"ray://127.0.0.1:{port}"] if how == "option" else []
    if how == "env":
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    code, out, err = saew("match", "--release", R, "--executor", "ray", *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"127.0.0.1:{port}: cannot join a Ray cluster there" in err
    assert lake.query("SELECT count(*) AS n FROM runs").column("n")[0].as_py() == before
    assert not lake.has_data("matches")


def test_ray_missing_on_the_command_line(saew, lake, monkeypatch):
    put_sae(lake, R, 0, make_sae(seed=0))
    put_sae(lake, R, 1, make_sae(seed=1))
    monkeypatch.setitem(sys.modules, "ray", None)
    code, out, err = saew("match", "--release", R, "--executor", "ray")
    assert code == 2 and err.strip() == ("saew: error: --executor ray: Ray is not installed; "
                                         "pip install -e '.[ray]'")
    assert not lake.has_data("matches")
    code, _, err = saew("match", "--release", R, "--workers", "0")
    assert code == 2 and "--workers" in err and len(err.strip().splitlines()) == 1


def test_device_resolution():
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if cuda else "mps" if mps else "cpu")
    if not cuda:
        with pytest.raises(BadInput, match="--device cuda: torch sees no CUDA GPU"):
            resolve_device("cuda")
    if not mps:
        with pytest.raises(BadInput, match="--device mps"):
            resolve_device("mps")
    with pytest.raises(BadInput, match="--device 'tpu'"):
        resolve_device("tpu")
    # on a Ray cluster the cluster's GPUs decide
    assert resolve_device("auto", gpus=1.0) == "cuda" and resolve_device("auto", gpus=0.0) == "cpu"
    assert resolve_device("cuda", gpus=2.0) == "cuda"
    with pytest.raises(BadInput, match="--device cuda: the Ray cluster has no GPU"):
        resolve_device("cuda", gpus=0.0)
    assert step_device(SimpleNamespace()) == "cpu"     # a step without --device
    assert step_device(SimpleNamespace(device="cpu", executor="ray")) == "cpu"   # no cluster needed


def test_screening_on_a_device_path_equals_the_cpu_screen():
    """The device branch of the screening GEMM (run here on the CPU as device 'cpu:0': the same
    code a GPU runs, with the results moved back) gives the CPU float32 screen bit for bit,
    and the same exact matching."""
    import torch

    from saew.compute.matching.costs import CosineCosts, SqEuclidCosts
    from saew.compute.matching.solver import SolverConfig, solve

    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 24)).astype(np.float32)
    b = (a[rng.permutation(300)] + 0.05 * rng.standard_normal((300, 24))).astype(np.float32)
    for cls in (SqEuclidCosts, CosineCosts):
        cpu, dev = cls(a, b, screen="float32"), cls(a, b, screen="float32", device="cpu:0")
        assert dev.screen == "float32"
        blk, off = dev.screen_block(10, 90)
        ref, ref_off = cpu.screen_block(10, 90)
        assert off is None and ref_off is None and torch.equal(blk, ref)
        cfg = SolverConfig(k=16, dense_limit=0, screen="float32")
        r_cpu = solve(cpu, "sparse", cfg)
        r_dev = solve(dev, "sparse", SolverConfig(k=16, dense_limit=0, screen="float32", device="cpu:0"))
        assert np.array_equal(r_cpu.rows, r_dev.rows) and np.array_equal(r_cpu.cols, r_dev.cols)
        assert r_cpu.total == r_dev.total


def test_train_on_a_device_path_equals_cpu():
    """train_sae's device branch (default device and generator on the device, weights moved
    back) is the CPU code when the device is the CPU: 'cpu:0' gives the same SAE bit for bit."""
    import torch

    from saew.compute.training.config import TrainConfig
    from saew.compute.training.trainer import train_sae

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((512, 16)).astype(np.float32))
    cfg = TrainConfig(arch="topk", d_sae=32, k=4, steps=12, batch_size=128)
    a, b = train_sae(x, cfg), train_sae(x, cfg, device="cpu:0")
    assert np.array_equal(a.params.w_dec, b.params.w_dec) and np.array_equal(a.params.b_enc, b.params.b_enc)
    assert a.final == b.final


def test_evaluate_on_a_device_path_equals_cpu():
    import scipy.sparse as sp

    from saew.compute.matching.evaluate import gathered_decoder, reconstruction_error

    rng = np.random.default_rng(1)
    f0 = sp.random(200, 32, density=0.1, random_state=1, dtype=np.float32, format="csr")
    f1 = sp.random(200, 40, density=0.1, random_state=2, dtype=np.float32, format="csr")
    w = rng.standard_normal((40, 8)).astype(np.float32)
    decs = {"m": gathered_decoder(w, 32, np.arange(32), rng.permutation(40)[:32])}
    assert reconstruction_error(f0, f1, w, decs, 3) == reconstruction_error(f0, f1, w, decs, 3, "cpu:0")


# ------------------------------------------------------------------ units
def _four_layers(lake) -> None:
    for L in range(4):
        put_sae(lake, R, L, make_sae(d_in=16, d_sae=32, seed=L))


def _matches(lake):
    return lake.query("SELECT src_layer, src_feature, dst_feature, cost FROM matches "
                      "ORDER BY src_layer, src_feature")


@pytest.mark.skipif(not hasattr(__import__("saew.storage.lake", fromlist=["Lake"]).Lake, "commit_unit"),
                    reason="needs Lake.commit_unit (unit commits)")
def test_a_failed_unit_keeps_the_units_before_it_and_the_rerun_does_the_rest(saew, lake, monkeypatch,
                                                                             tmp_path):
    import saew.compute.matching.step as step

    _four_layers(lake)
    real = step.match_unit
    calls: list[int] = []

    def failing(a, b, l0, *rest):
        calls.append(l0)
        if l0 == 2:
            raise RuntimeError("killed at pair 2-3")
        return real(a, b, l0, *rest)

    monkeypatch.setattr(step, "match_unit", failing)
    with pytest.raises(RuntimeError, match="killed at pair 2-3"):
        saew("match", "--release", R, "--workers", "1")
    assert calls == [0, 1, 2]
    kept = _matches(lake)
    assert sorted(set(kept.column("src_layer").to_pylist())) == [0, 1]   # pairs 0-1 and 1-2 stay
    run = lake.query("SELECT status, units FROM runs WHERE command = 'match'").to_pylist()
    assert run == [{"status": "partial", "units": ["pair=0-1", "pair=1-2"]}]

    calls.clear()
    monkeypatch.setattr(step, "match_unit", lambda a, b, l0, *rest: (calls.append(l0), real(a, b, l0, *rest))[1])
    code, out, err = saew("match", "--release", R, "--workers", "1")
    assert code == 0, err
    assert calls == [2]                          # only the missing unit
    assert "kept 2 unit(s)" in out
    # the same rows as one uninterrupted run
    from saew.storage.lake import Lake

    other = Lake(tmp_path / "other")
    _four_layers(other)
    assert saew("match", "--release", R, home_dir=tmp_path / "other")[0] == 0
    assert _matches(lake).equals(_matches(other))
    # a completed run leaves nothing to resume: the next run redoes every unit
    calls.clear()
    assert saew("match", "--release", R, "--workers", "1")[0] == 0
    assert calls == [0, 1, 2]


def test_demo_passes_the_executor_options_to_the_steps_with_units():
    from saew.cli.commands import build_parser
    from saew.cli.demo import _parse, _where

    where = _where(SimpleNamespace(executor="ray", ray_address=None, workers=2, device="cpu"))
    assert where == ["--executor", "ray", "--workers", "2", "--device", "cpu"]
    p = build_parser()
    m = _parse(p, ["match", "--release", "r", *where])
    assert (m.executor, m.workers, m.device) == ("ray", 2, "cpu")
    c = _parse(p, ["cluster", "--release", "r", "--space", "decoder", *where])
    assert c.executor == "ray" and c.workers == 2 and not hasattr(c, "device")
    assert not hasattr(_parse(p, ["build", *where]), "executor")
    assert _where(SimpleNamespace(executor="local", ray_address=None, workers=None, device="auto")) == []


@pytest.mark.skipif(not hasattr(__import__("saew.storage.lake", fromlist=["Lake"]).Lake, "commit_unit"),
                    reason="needs Lake.commit_unit (unit commits)")
def test_cluster_keeps_the_layers_before_a_failed_one(saew, lake, monkeypatch):
    """A layer that fails after others were clustered loses only itself (issue 16: one bad
    layer after 24 minutes of clustering lost every layer)."""
    import saew.compute.clustering.step as step
    from saew.sae.params import SAEParams
    from tests.factories_cluster import planted

    for L in range(3):
        w_dec, _ = planted(3, 12, 8, seed=L)
        base = make_sae(8, len(w_dec), seed=L)
        put_sae(lake, R, L, SAEParams(w_enc=base.w_enc, b_enc=base.b_enc, w_dec=w_dec, b_dec=base.b_dec))
    real, calls = step._cluster_job, []

    def job(L, *rest):
        calls.append(L)
        if L == 1 and len(calls) < 3:
            raise RuntimeError("layer 1 fails")
        return real(L, *rest)

    monkeypatch.setattr(step, "_cluster_job", job)
    opts = ["cluster", "--release", R, "--space", "decoder", "--algorithm", "leiden", "--workers", "1",
            "--null-draws", "50", "--xy-epochs", "5"]
    with pytest.raises(RuntimeError, match="layer 1 fails"):
        saew(*opts)
    layers = lambda: lake.query("SELECT DISTINCT layer FROM clusters ORDER BY 1").column("layer").to_pylist()  # noqa: E731
    assert layers() == [0] and calls == [0, 1]
    code, out, err = saew(*opts)
    assert code == 0, err
    assert calls == [0, 1, 1, 2] and layers() == [0, 1, 2] and "kept 1 unit(s)" in out


WORKER_THREADS = """
import sys
import numpy   # loaded before any worker setting, as the saew script loads it

def threads(_):
    from threadpoolctl import threadpool_info
    return sorted({(p["user_api"], p["num_threads"]) for p in threadpool_info()})

if __name__ == "__main__":
    from saew.compute.executor import Executor, ExecutorConfig
    for r in Executor(ExecutorConfig(workers=2)).map(threads, [(0,), (1,)], 2):
        print(r)
"""


def test_spawned_workers_run_one_thread_even_with_numpy_loaded_first(tmp_path):
    """A spawned worker imports its parent's main module before its settings run; the pools
    loaded by then (OpenBLAS by numpy) are limited to one thread too, so two workers do not
    run four spinning BLAS threads on two cores."""
    import subprocess

    script = tmp_path / "main.py"
    script.write_text(WORKER_THREADS)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "", "OMP_NUM_THREADS": ""}
    env.pop("OPENBLAS_NUM_THREADS"), env.pop("OMP_NUM_THREADS")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         cwd=os.getcwd(), check=True).stdout.splitlines()
    assert len(out) == 2
    for line in out:
        pools = eval(line)   # noqa: S307 - our own printed list of (api, threads)
        assert pools and all(n == 1 for _, n in pools), pools
