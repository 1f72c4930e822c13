"""A DuckLake home on a Postgres catalog, through the ``saew`` CLI (real processes, a real server).

Each test makes its home with ``saew init --lake ducklake --catalog postgres:...`` on a fresh
database of the session's throwaway server (``tests/pg.py``) and runs ``saew`` commands as forked
processes (``tests.reliability.harness``' fork server):

* parity: the same inputs and ``saew build`` on a Parquet home give the same lake tables and marts;
* a writer killed (-9) inside its DuckLake transaction leaves the previous snapshot current and
  the lake as it was; the next run commits;
* 4 writers x 10 commands at once, each writer on its own release: every command exits 0, every
  run and snapshot is there, and the row counts are exact;
* two multi-unit commands on the same release at once are serialised (or one exits 3 with one
  line): the snapshots of one never fall between those of the other;
* readers during multi-layer rewrites never see a mix of two versions.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.pg import pg_catalog, pg_server  # noqa: F401  (fixtures)
from tests.reliability import harness

D_SAE = 32


def saew_ok(home: Path, *args, **extra: str) -> None:
    r = harness.saew(home, *args, **extra)
    assert r.returncode == 0, f"saew {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr[-2000:]}"


def pg_home(path: Path, catalog: str) -> Path:
    saew_ok(path, "init", "--lake", "ducklake", "--catalog", catalog)
    assert "postgres:" in (path / "saew.toml").read_text()
    return path


def snapshots(home: Path) -> list[dict]:
    from saew.storage.lake import Lake

    return Lake(home).snapshots().to_pylist()


def state(home: Path) -> dict[str, tuple[int, int]]:
    """{table/partition: (rows, sum of row hashes)} of every table but ``runs``, read through
    ``Lake`` (one snapshot), per-run columns left out."""
    from saew.storage.lake import Lake
    from saew.storage.schemas import TABLES

    lake = Lake(home)
    con = lake.connect()
    out: dict[str, tuple[int, int]] = {}
    try:
        for name, t in TABLES.items():
            if name == "runs":
                continue
            drop = [c for c in harness.VOLATILE.get(name, ()) if c in t.schema.names]
            ex = f" EXCLUDE ({', '.join(drop)})" if drop else ""
            keys = ", ".join(f'"{c}"' for c in t.partition_by)
            for r in con.execute(f"SELECT {keys}, count(*), sum(hash(s)::HUGEINT)::VARCHAR FROM "
                                 f"(SELECT *{ex} FROM \"{name}\") s GROUP BY ALL").fetchall():
                out[name + "".join(f"/{c}={v}" for c, v in zip(t.partition_by, r))] = (int(r[-2]), int(r[-1]))
    finally:
        con.close()
    return out


# ---------------------------------------------------------------------------- parity
def _approx(marts: dict[str, list[tuple]], digits: int = 12) -> dict[str, list[tuple]]:
    """Floats to ``digits`` significant digits, rows re-sorted: a mean or a sum may differ in its
    last bit between engines (DuckDB's parallel aggregation adds in file and thread order)."""
    def norm(v):
        if not isinstance(v, float):
            return v
        return "nan" if v != v else float(f"{v:.{digits}g}")

    return {n: sorted((tuple(norm(v) for v in r) for r in rows), key=repr) for n, rows in marts.items()}


def test_every_table_and_mart_is_the_same_as_on_a_parquet_home(tmp_path: Path, pg_catalog: str) -> None:  # noqa: F811
    """The small warehouse of the dbt tests written into the Postgres home, ``saew build`` run on
    it; compared with the Parquet home of the same inputs (17A's parity helpers)."""
    from saew.storage.lake import Lake
    from saew.storage.schemas import TABLES
    from tests.factories_dbt import built_small_warehouse, write_small_warehouse
    from tests.storage.test_ducklake_parity import _marts, _rows

    pq_home, _ = built_small_warehouse()
    home = pg_home(tmp_path / "pg", pg_catalog)
    write_small_warehouse(Lake(home))
    saew_ok(home, "build", "--quiet")
    a, b = Lake(pq_home), Lake(home)
    assert b.engine is not None and b.config.catalog.startswith("postgres:")
    differ = [t for t in TABLES if _rows(a, t) != _rows(b, t)]
    assert differ == [], f"lake tables that differ: {differ}"
    ma, mb = _approx(_marts(pq_home)), _approx(_marts(home))
    assert ma.keys() == mb.keys() and len(ma) > 5
    differ = {n: (ma[n][:2], mb[n][:2]) for n in ma if ma[n] != mb[n]}
    assert differ == {}, f"marts that differ (parquet rows, postgres rows): {differ}"
    assert sum(bool(rows) for rows in ma.values()) > 5  # not a comparison of empty marts


# ---------------------------------------------------------------------------- kill -9 mid-commit
def test_a_writer_killed_inside_its_commit_leaves_the_previous_snapshot(tmp_path: Path,
                                                                        pg_catalog: str) -> None:  # noqa: F811
    from saew.storage.ducklake import CHAOS_POINT
    from saew.storage.versions import CHAOS_ENV

    home = pg_home(tmp_path / "pg", pg_catalog)
    old = [harness.sae_folder(tmp_path / f"old{i}", i, D_SAE, i) for i in range(2)]
    new = [harness.sae_folder(tmp_path / f"new{i}", i, D_SAE // 2, 10 + i) for i in range(2)]
    saew_ok(home, "ingest", "sae", *old, "--release", "r")
    before, snaps = state(home), snapshots(home)

    r = harness.saew(home, "ingest", "sae", *new, "--release", "r", **{CHAOS_ENV: CHAOS_POINT})
    assert r.returncode == -signal.SIGKILL, r.stderr  # killed after its writes, before COMMIT
    assert snapshots(home) == snaps and state(home) == before

    saew_ok(home, "ingest", "sae", *new, "--release", "r")  # the lock died with the writer
    after = snapshots(home)
    assert after[:-1] == snaps and after[-1]["command"].startswith("ingest sae")
    widths = {k: v[0] for k, v in state(home).items() if k.startswith("features/")}
    assert widths == {"features/release=r/layer=0": D_SAE // 2, "features/release=r/layer=1": D_SAE // 2}


# ---------------------------------------------------------------------------- many writers
def test_four_writers_ten_commands_each_nothing_lost(tmp_path: Path, pg_catalog: str) -> None:  # noqa: F811
    writers, each = 4, 10
    home = pg_home(tmp_path / "pg", pg_catalog)
    folders = {(w, k): harness.sae_folder(tmp_path / f"w{w}-{k}", k, 8 + w, 100 * w + k)
               for w in range(writers) for k in range(each)}
    servers = [harness.Forker() for _ in range(writers)]
    errs: list[str] = []
    try:
        for k in range(each):  # writer w ingests layer k of its release rw<w>
            for w, fk in enumerate(servers):
                fk.start(home, ["ingest", "sae", folders[w, k], "--release", f"rw{w}"])
            for fk in servers:
                rc, err = fk.wait()
                if rc != 0:
                    errs.append(f"exit {rc}: {err.strip()[-300:]}")
    finally:
        for fk in servers:
            fk.close()
    assert errs == []
    from saew.storage.lake import Lake

    lake = Lake(home)
    runs = lake.query("SELECT json_extract_string(params, '$.release') AS release, count(*) AS n FROM runs "
                      "WHERE status = 'ok' GROUP BY 1 ORDER BY 1").to_pylist()
    assert runs == [{"release": f"rw{w}", "n": each} for w in range(writers)]
    feats = lake.query("SELECT release, layer, count(*) AS n FROM features GROUP BY ALL ORDER BY ALL").to_pylist()
    assert feats == [{"release": f"rw{w}", "layer": k, "n": 8 + w} for w in range(writers) for k in range(each)]
    run_ids = lake.query("SELECT run_id FROM runs").column(0).to_pylist()
    snap_runs = [s["run_id"] for s in snapshots(home) if s["run_id"]]
    assert sorted(set(snap_runs)) == sorted(run_ids) and len(run_ids) == writers * each


def test_two_commands_on_the_same_release_are_serialised(tmp_path: Path, pg_catalog: str) -> None:  # noqa: F811
    import scipy.sparse as sp

    layers = 3
    home = pg_home(tmp_path / "pg", pg_catalog)
    saes = [harness.sae_folder(tmp_path / f"sae{i}", i, D_SAE, i) for i in range(layers)]
    saew_ok(home, "ingest", "sae", *saes, "--release", "r")
    for i in range(layers):
        m = sp.random(300, D_SAE, density=0.08, random_state=i, format="csr", dtype=np.float32)
        m.data = np.abs(m.data) + 0.1
        sp.save_npz(tmp_path / f"a{i}.npz", m)
        saew_ok(home, "ingest", "activations", tmp_path / f"a{i}.npz", "--release", "r", "--layer", i)
    start = len(snapshots(home))
    pair = (["match", "--release", "r", "--method", "folded"], ["coactivation", "--release", "r"])
    servers = [harness.Forker() for _ in pair]
    try:
        for fk, argv in zip(servers, pair):
            fk.start(home, argv)
        results = [fk.wait() for fk in servers]
    finally:
        for fk in servers:
            fk.close()
    for rc, err in results:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 0 or (rc == 3 and len(lines) == 1), f"exit {rc}: {err[-500:]}"
    assert 0 in [rc for rc, _ in results]
    ran = [s["run_id"] for s in snapshots(home)[start:]]
    assert len(set(ran)) == sum(rc == 0 for rc, _ in results) and len(ran) > len(set(ran))  # several units each
    blocks = [rid for i, rid in enumerate(ran) if i == 0 or ran[i - 1] != rid]
    assert len(blocks) == len(set(blocks)), f"the two commands' snapshots interleave: {ran}"


def test_a_reader_during_multi_layer_rewrites_never_sees_a_mix(tmp_path: Path, pg_catalog: str) -> None:  # noqa: F811
    layers, writes = 4, 4
    home = pg_home(tmp_path / "pg", pg_catalog)
    a, b = harness.tagged_sets(tmp_path, layers)
    saew_ok(home, "ingest", "sae", *a, "--release", "r")
    t0 = time.monotonic()
    saew_ok(home, "ingest", "sae", *b, "--release", "r")
    seconds = (time.monotonic() - t0) * writes + 1
    readers = {k: subprocess.Popen([str(harness.PY), "-m", "tests.reliability.harness", "reader", str(home),
                                    str(seconds), k, str(layers)], stdout=subprocess.PIPE, text=True,
                                   env=harness.env(), cwd=harness.ROOT)
               for k in ("lake", "catalog")}
    for i in range(writes):
        saew_ok(home, "ingest", "sae", *(a if i % 2 == 0 else b), "--release", "r")
    for kind, p in readers.items():
        out = json.loads(p.communicate(timeout=seconds + 120)[0])
        assert out["reads"] > 0 and out["torn"] == 0 and out["failed"] == 0, out
