"""The short chaos run inside ``make test`` (``make chaos`` runs the long one, bench/chaos.py):
kill -9 an ``ingest sae`` at each commit step, readers in loops during writes."""
from __future__ import annotations

from tests.reliability import harness

POINTS = ["stage", "manifest", "committed", "link"]   # before, at and after the commit point


def test_kill_at_each_commit_step_leaves_before_or_after_and_the_next_run_succeeds(tmp_path):
    base = harness.base_home(tmp_path, layers=2, d_sae=32)
    argv, units = harness.commands(tmp_path, layers=2, d_sae=32)["ingest sae"]
    fig = harness.kill_trials(tmp_path, base, "ingest sae", argv, units, POINTS, randoms=0)
    assert fig.failures == []
    assert fig.killed == len(POINTS) and fig.survived == fig.killed


def test_readers_during_writes_never_see_a_torn_unit_nor_fail(tmp_path):
    out = harness.readers_during_writes(tmp_path, layers=4, writes=3, kinds=("lake", "catalog"))
    assert out["writer_failures"] == []
    for kind in ("lake", "catalog"):
        assert out[kind]["reads"] > 0, out[kind]
        assert out[kind]["torn"] == 0 and out[kind]["failed"] == 0, out[kind]


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path):
    import pytest

    out = harness.full_disk(tmp_path)
    if "skipped" in out:
        pytest.skip(out["skipped"])
    assert out["exit"] == 2 and out["stderr_lines"] == 1 and "no space left" in out["message"], out
    assert out["lake_unchanged"] and out["nothing_left"] and out["next_run_ok"], out
