"""The planted benchmark (issue 14, item 6), end to end through the real CLI and dbt.

A release from ``tests/factories_planted.py`` in the ``all`` regime (weak separation with a
shared direction, a compact outlier group, Zipf sizes, 35% background; one split, merge,
vanish and birth per layer pair) is ingested from SAELens folders, its planted labels as
cluster space ``planted`` and its permutations as matches ``decoder/planted``. Then
``saew cluster --space decoder`` (the defaults) must find clusters with adjusted Rand >= 0.8
against the planted ones at every layer, and the rates of ``fct_layer_evolution`` over the
planted matches must be the same (within 0.1) whether they are computed from the found
clusters (cluster space ``decoder``) or from the planted labels.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from tests.factories_dbt import mart
from tests.factories_planted import (PLANTED_METHOD, PLANTED_SPACE, RELEASE, ingest_planted,
                                     planted_release)

RATES = ("survive_rate", "split_rate", "vanish_rate", "merge_rate", "birth_rate")
LINK = f"match/decoder/{PLANTED_METHOD}"


@pytest.fixture(scope="module")
def planted():
    return planted_release("all", n_layers=4, d_sae=768, seed=0)


def test_generator_events_are_what_was_planted(planted):
    """The generator's own bookkeeping: permutations are bijections, labels of layer l+1 are
    the events applied to the pre-images, cluster counts stay constant."""
    p = planted
    for L, perm in p.perms.items():
        assert np.array_equal(np.sort(perm), np.arange(len(perm)))
        src, dst = p.labels[L], p.labels[L + 1][perm]          # dst[i]: label of i's image
        ev = p.events[L]
        for a in ev["survive"]:
            assert len(np.unique(dst[src == a])) == 1 and dst[src == a][0] >= 0
        (s,) = ev["split"]
        parts, counts = np.unique(dst[src == s], return_counts=True)
        assert len(parts) == 2 and (parts >= 0).all() and counts.max() / counts.sum() == pytest.approx(0.6, abs=0.02)
        m = np.unique(dst[np.isin(src, ev["merge"])])
        assert len(m) == 1 and m[0] >= 0
        assert (dst[src == ev["vanish"][0]] == -1).all()
        (b,) = ev["birth"]
        assert (src[dst == b] == -1).all()
        assert src.max() == p.labels[L + 1].max()


def test_found_clusters_match_the_planted_ones(saew, home, tmp_path, planted):
    p = planted
    ingest_planted(saew, tmp_path / "planted", p)
    code, out, err = saew("cluster", "--release", RELEASE, "--space", "decoder")
    assert code == 0, err
    found = {}
    from saew.storage.lake import Lake

    lake = Lake(home)
    for L in p.layers:
        found[L] = lake.query("SELECT cluster FROM clusters WHERE release = ? AND layer = ? AND "
                              "space = 'decoder' ORDER BY feature", [RELEASE, L]).column(0).to_numpy()
        assert adjusted_rand_score(p.labels[L], found[L]) >= 0.8, L
    q = lake.query("SELECT layer, has_structure, largest_share FROM cluster_quality WHERE "
                   "space = 'decoder' ORDER BY layer").to_pylist()
    assert all(r["has_structure"] for r in q)
    assert max(r["largest_share"] for r in q) < 0.25

    code, out, err = saew("build", "--quiet", "--select", "+fct_layer_evolution")
    assert code == 0, out + err
    rows = mart(home, "SELECT cluster_space, src_layer, " + ", ".join(RATES) + " FROM "
                "fct_layer_evolution WHERE release = ? AND link = ? ORDER BY src_layer",
                [RELEASE, LINK])
    by = {(r["cluster_space"], r["src_layer"]): r for r in rows}
    for L in p.perms:
        want, got = by[(PLANTED_SPACE, L)], by[("decoder", L)]
        # the planted labels give exactly the planted events (a hand count: K clusters on
        # both sides; the split and merged clusters also survive, M = 0.6 and 1)
        k = int(p.labels[L].max()) + 1
        assert want["vanish_rate"] == pytest.approx(1 / k) and want["split_rate"] == pytest.approx(1 / k)
        assert want["survive_rate"] == pytest.approx(1 - 1 / k)
        assert want["merge_rate"] == pytest.approx(1 / k) and want["birth_rate"] == pytest.approx(1 / k)
        for rate in RATES:
            assert abs(got[rate] - want[rate]) <= 0.1, (L, rate, got[rate], want[rate])
