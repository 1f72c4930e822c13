"""--executor ray gives the lake rows of --executor local: match, cluster, transport,
co-activation and correlate on a small warehouse (integers, labels and keys exactly; floats
within 1e-6 relative), and ``saew demo --executor ray --model minilm`` passes, all on one local
Ray cluster of 2 CPUs started once for this module (its two workers import torch and compile
numba's kernels once, for every test here: that warm-up is most of this module's time)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from saew.sae.params import SAEParams
from tests.factories import make_sae, put_sae
from tests.factories_cluster import planted
from tests.factories_coact import put_activations, sparse_matrix
from tests.pg import pg_catalog, pg_server  # noqa: F401  (fixtures)

ray = pytest.importorskip("ray")

R = "r"
N_LAYERS, D_IN, TOKENS, PER_CLUSTER = 3, 16, 240, 12
FAST_CLUSTER = ["--n-epochs", "30", "--xy-epochs", "10", "--null-draws", "50",
                "--refine-n-neighbors", "5", "--silhouette-sample", "0"]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for every test here; the executor joins it."""
    from saew.compute.executor import THREAD_VARS

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {**{v: "1" for v in THREAD_VARS}, "SAEW_PROGRESS": "0"}})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """SAEs with planted decoder clusters (4 x 12 features) at 3 layers (2 layer pairs) and
    activations on the same tokens."""
    return build(tmp_path_factory.mktemp("ray") / "home")


def build(home):
    """The warehouse's rows written into the (Parquet or DuckLake) home ``home``."""
    from saew.storage.lake import Lake

    lake = Lake(home)
    for L in range(N_LAYERS):
        w_dec, _ = planted(4, PER_CLUSTER, D_IN, seed=L)
        base = make_sae(D_IN, len(w_dec), seed=L)
        put_sae(lake, R, L, SAEParams(w_enc=base.w_enc, b_enc=base.b_enc, w_dec=w_dec, b_dec=base.b_dec))
        put_activations(lake, R, L, sparse_matrix(TOKENS, len(w_dec), 0.08, seed=10 + L), with_sae=False)
    return home


TABLES = {
    "matches": ("match", ["--method", "all", "--draws", "3"],
                "space, method, src_layer, src_feature"),
    "clusters": ("cluster", ["--space", "decoder", *FAST_CLUSTER], "layer, space, feature"),
    "cluster_quality": (None, [], "layer, space"),
    "transport": ("transport", ["--space", "decoder"], "space, solver, src_layer, src_cluster, dst_cluster"),
    "coactivations": ("coactivation", [], "layer, feature_a, feature_b"),
    "correlations": ("correlate", [], "src_layer, src_feature, dst_feature"),
}


def _read(home, table: str, order: str) -> dict[str, list]:
    from saew.storage.lake import Lake

    t = Lake(home).query(f"SELECT * FROM {table} WHERE release = '{R}' ORDER BY {order}")
    return {c: t.column(c).to_pylist() for c in t.column_names if c != "run_id"}


def _same(a: dict[str, list], b: dict[str, list], table: str) -> None:
    assert a.keys() == b.keys() and len(next(iter(a.values()))) > 0, table
    for c in a:
        x, y = a[c], b[c]
        if x and isinstance(next((v for v in x if v is not None), None), float):
            xa = np.array([np.nan if v is None else v for v in x], float)
            ya = np.array([np.nan if v is None else v for v in y], float)
            np.testing.assert_allclose(ya, xa, rtol=1e-6, atol=0, equal_nan=True, err_msg=f"{table}.{c}")
        else:
            assert x == y, f"{table}.{c}"


def _run_all(saew, home, extra: list[str]) -> dict[str, dict]:
    out = {}
    for table, (cmd, opts, order) in TABLES.items():
        if cmd is not None:
            code, _, err = saew(cmd, "--release", R, *opts, *extra, home_dir=home)
            assert code == 0, f"{cmd} {extra}: {err}"
        out[table] = _read(home, table, order)
    return out


def test_ray_gives_the_local_rows(saew, warehouse, ray_cluster):
    local = _run_all(saew, warehouse, ["--executor", "local", "--workers", "1"])
    on_ray = _run_all(saew, warehouse, ["--executor", "ray", "--workers", "2"])
    for table in TABLES:
        _same(local[table], on_ray[table], table)


def test_a_task_error_is_the_error_itself(ray_cluster):
    from saew.compute.executor import ExecutorConfig, executor
    from saew.errors import BadInput

    ex = executor(ExecutorConfig(engine="ray", workers=2))
    assert not ex.in_process(4) and ex.workers(10) == 2
    assert list(ex.map(pow, ((i, 2) for i in range(5)), 5)) == [0, 1, 4, 9, 16]
    with pytest.raises(BadInput, match="^bad unit$"):
        list(ex.map(_bad, ((i,) for i in range(3)), 3))
    with ex.background(pow, 3, 3) as job:
        assert job.result() == 27


def test_chained_jobs_run_as_contiguous_chains_one_process_each(ray_cluster):
    """map(chained=True): 2 chains of 3 and 2 jobs, each chain in one worker process (the
    second job of a chain sees what the first left), results in order; a failing job raises
    itself after the jobs before it."""
    from saew.compute.executor import ExecutorConfig, executor
    from saew.errors import BadInput

    ex = executor(ExecutorConfig(engine="ray", workers=2))
    assert ex.chains_share_process(5)
    out = list(ex.map(_remember, ((i,) for i in range(5)), 5, chained=True))
    assert [i for i, _, _ in out] == [0, 1, 2, 3, 4]
    assert [prev for _, prev, _ in out] == [None, 0, 1, None, 3]
    pids = [pid for _, _, pid in out]
    assert pids[0] == pids[1] == pids[2] and pids[3] == pids[4] and os.getpid() not in pids
    got = []
    with pytest.raises(BadInput, match="^bad unit$"):
        for v in ex.map(_bad, ((i,) for i in range(4)), 4, chained=True):
            got.append(v)
    assert got == [0]


_PREV: list[int] = []


def _remember(i: int) -> tuple[int, int | None, int]:
    """(i, the job this process ran just before in this chain, or None, pid)."""
    prev = _PREV[-1] if _PREV and _PREV[-1] == i - 1 else None
    _PREV[:] = [i]
    return i, prev, os.getpid()


def _bad(i: int) -> int:
    from saew.errors import BadInput

    if i == 1:
        raise BadInput("bad unit")
    return i


def test_demo_on_ray_passes(saew, tmp_path, ray_cluster):
    """``saew demo --executor ray --model minilm`` (issue 16 item 4), kept small: 3,000 tokens,
    two layers (one layer pair), 128 features per layer. Every step with units runs its units
    as tasks on the module's cluster; the steps without units run here as usual."""
    home = tmp_path / "demo"
    code, out, err = saew("demo", "--model", "minilm", "--tokens", "3000", "--layers", "0-1",
                          "--d-sae", "128", "--executor", "ray", "--workers", "2", home_dir=home)
    assert code == 0, err[-3000:]
    assert "saew demo: release 'demo-minilm' done" in out and "layers: 2, features: 256" in out
    assert "skipped" not in out and "(no findings" not in out
    from saew.storage.lake import Lake

    lake = Lake(home)
    runs = lake.query("SELECT command, status, params FROM runs").to_pylist()
    import json

    on_ray = {r["command"] for r in runs if json.loads(r["params"]).get("executor") == "ray"}
    assert {"train", "match", "cluster", "transport", "coactivation", "correlate", "communities",
            "evaluate"} <= on_ray, on_ray
    assert all(r["status"] == "ok" for r in runs)
    for table in ("matches", "clusters", "transport", "coactivations", "correlations", "communities",
                  "reconstruction"):
        assert lake.query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py() > 0, table
    assert (home / "reports" / "demo-minilm" / "index.html").exists()


def test_on_ducklake_each_task_commits_its_own_unit(saew, warehouse, ray_cluster, tmp_path,
                                                    pg_catalog):  # noqa: F811
    """Issue 17 item 3: on a DuckLake home with a Postgres catalog, a Ray task commits its unit's
    rows as one snapshot of its own (labelled with the driver's command and run_id, marked
    ``task``), the driver records the unit in its runs row, and the rows are those of a local run."""
    import json

    from saew.storage.lake import Lake

    home = tmp_path / "dl"
    code, _, err = saew("init", "--lake", "ducklake", "--catalog", pg_catalog, home_dir=home)
    assert code == 0, err
    dst = Lake(build(home))
    local = _run_all(saew, warehouse, ["--executor", "local", "--workers", "1"])
    on_ray = _run_all(saew, home, ["--executor", "ray", "--workers", "2"])
    for table in TABLES:
        _same(local[table], on_ray[table], table)
    runs = {r["command"]: r for r in dst.query("SELECT command, run_id, units, status FROM runs").to_pylist()}
    for cmd, n_units in (("transport", 2), ("coactivation", 3), ("correlate", 2), ("cluster", 3), ("match", 2)):
        run = runs[cmd]
        assert run["status"] == "ok" and len(run["units"]) == n_units, run
        cur = dst.engine.cursor()
        try:
            infos = [json.loads(x) for (x,) in cur.execute(
                "SELECT commit_extra_info FROM lake.snapshots() WHERE commit_extra_info IS NOT NULL").fetchall()]
        finally:
            cur.close()
        by_task = [i for i in infos if i.get("run_id") == run["run_id"] and i.get("task")]
        assert sorted(u for i in by_task for u in i["units"]) == sorted(run["units"]), (cmd, by_task)
