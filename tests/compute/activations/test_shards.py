"""Token shards: harvest writes one ``activations`` partition per (layer, shard); co-activation
and correlation over a sharded layer are sums over its shards, identical to one unsharded run."""
from __future__ import annotations

import numpy as np
import pytest

from saew.compute.activations.shards import ShardBuffer
from tests.factories import make_sae, put_sae
from tests.factories_coact import sparse_matrix
from tests.factories_harvest import write_txt

TABLES = {"coactivations": "layer, feature_a, feature_b",
          "correlations": "src_layer, src_feature, dst_layer, dst_feature"}


def _rows(lake, table: str, release: str) -> list[tuple]:
    t = lake.query(f"SELECT * EXCLUDE (release) FROM {table} WHERE release = ? ORDER BY {TABLES[table]}",
                   [release])
    return [tuple(r.values()) for r in t.to_pylist()]


def put_sharded(lake, release: str, layer: int, m: np.ndarray, shard_tokens: int | None,
                token_ids: np.ndarray | None = None) -> None:
    """One layer's activations from a dense matrix, split into shards of ``shard_tokens`` token
    ids (token_id // shard_tokens, as harvest does), or written whole (None)."""
    from saew.storage import catalog

    put_sae(lake, release, layer, make_sae(d_in=4, d_sae=m.shape[1], seed=layer))
    ids = np.arange(m.shape[0]) if token_ids is None else token_ids
    r, f = np.nonzero(m)
    tok, feat, val = ids[r].astype(np.int64), f.astype(np.int32), m[r, f].astype(np.float32)
    with lake.transaction():
        if shard_tokens is None:
            lake.write("activations", {"token_id": tok, "feature": feat, "value": val},
                       release=release, layer=layer)
        else:
            for s in np.unique(tok // shard_tokens):
                k = tok // shard_tokens == s
                lake.write("activations", {"token_id": tok[k], "feature": feat[k], "value": val[k]},
                           release=release, layer=layer, shard=int(s))
        lake.write("activation_sets", {"n_tokens": [m.shape[0]], "source": ["test"], "run_id": ["test"]},
                   release=release, layer=layer)
    catalog.refresh(lake)


def test_shard_buffer_splits_pieces_at_shard_boundaries():
    buf = ShardBuffer([0, 1], shard_tokens=10)
    tid = np.array([3, 9, 10, 10, 25, 29], np.int64)     # one batch crossing shards 0, 1 and 2
    buf.add(0, (tid, np.arange(6, dtype=np.int32), np.ones(6, np.float32)))
    assert buf.complete(20) == [0, 1]                     # tokens 0..19 run
    s0 = buf.pop(0)
    assert [p[0].tolist() for p in s0[0]] == [[3, 9]] and s0[1] == []
    assert [p[1].tolist() for p in buf.pop(1)[0]] == [[2, 3]]
    assert buf.complete(29) == [] and buf.remaining(30) == [2]   # token 29 seen: shard 2 is the last
    assert [p[0].tolist() for p in buf.pop(2)[0]] == [[25, 29]]
    assert buf.remaining(30) == []


@pytest.mark.parametrize("shard_tokens", [37, 1000])
def test_coactivation_and_correlate_over_shards_equal_the_unsharded_run(saew, lake, shard_tokens):
    n = 240
    x = sparse_matrix(n, 30, 0.15, seed=1)
    y = sparse_matrix(n, 45, 0.12, seed=2)
    z = sparse_matrix(n, 20, 0.3, seed=3)
    y[:, 10] = 1.5 * x[:, 2]                  # a pass-through pair (pearson 1)
    x[100:150] = 0                            # a run of tokens where layer 0 is silent
    ids = np.arange(n, dtype=np.int64) * 3 + 5  # non-contiguous token ids
    for release, shards in (("whole", None), ("sharded", shard_tokens)):
        for layer, m in enumerate((x, y, z)):
            put_sharded(lake, release, layer, m, shards, ids)
        for step in ("coactivation", "correlate"):
            code, _, err = saew(step, "--release", release)
            assert code == 0, err
    n_shards = lake.query("SELECT count(DISTINCT shard) AS k FROM activations WHERE release = 'sharded' "
                          "AND layer = 1").column("k")[0].as_py()
    assert n_shards == len(np.unique(ids // shard_tokens)) == (20 if shard_tokens == 37 else 1)
    for table in TABLES:
        whole, sharded = _rows(lake, table, "whole"), _rows(lake, table, "sharded")
        assert whole and sharded == whole     # integers and floats alike: bit for bit


def test_a_whole_layer_write_replaces_every_shard(lake):
    m = sparse_matrix(50, 8, 0.3, seed=4)
    put_sharded(lake, "r", 0, m, 10)
    assert lake.query("SELECT count(DISTINCT shard) AS k FROM activations").column("k")[0].as_py() == 5
    put_sharded(lake, "r", 0, m[:20], None)   # e.g. `saew ingest activations` of the layer
    got = lake.query("SELECT DISTINCT shard, max(token_id) AS hi FROM activations GROUP BY shard").to_pylist()
    assert got == [{"shard": 0, "hi": int(np.nonzero(m[:20])[0].max())}]


def _harvest_rows(lake, release: str) -> dict[str, list]:
    q = {"activations": "SELECT layer, token_id, feature, value FROM activations WHERE release = ? "
                        "ORDER BY layer, token_id, feature",
         "tokens": "SELECT token_id, doc, pos, token FROM tokens WHERE release = ? ORDER BY token_id",
         "activation_sets": "SELECT layer, n_tokens FROM activation_sets WHERE release = ? ORDER BY layer",
         "examples": "SELECT layer, feature, kind, rank, token_id, tokens, acts, peak, value FROM examples "
                     "WHERE release = ? ORDER BY layer, feature, kind, rank"}
    return {k: [tuple(r.values()) for r in lake.query(s, [release]).to_pylist()] for k, s in q.items()}


def test_sharded_harvest_equals_one_shard(saew, lake, tmp_path):
    corpus = write_txt(tmp_path / "c.txt")
    for release in ("one", "many"):
        put_sae(lake, release, 1, make_sae(384, 32, "relu", seed=1))
        put_sae(lake, release, 4, make_sae(384, 24, "topk", seed=2, k=4))
    args = ["--model", "minilm", "--corpus", corpus, "--tokens", 70, "--batch-size", 2, "--seq-len", 24,
            "--examples", 3]
    assert saew("harvest", "--release", "one", *args)[0] == 0
    code, out, err = saew("harvest", "--release", "many", *args, "--shard-tokens", 16)
    assert code == 0, err
    assert "in 5 shard(s)" in out
    one, many = _harvest_rows(lake, "one"), _harvest_rows(lake, "many")
    assert one["activations"] and one["examples"]
    assert many == one
    shards = lake.query("SELECT layer, shard, min(token_id) AS lo, max(token_id) AS hi FROM activations "
                        "WHERE release = 'many' GROUP BY ALL ORDER BY ALL").to_pylist()
    assert all(r["lo"] // 16 == r["hi"] // 16 == r["shard"] for r in shards)
    # each shard's tokens are written with its codes (memory holds one shard's tokens, not the corpus)
    tok_shards = lake.query("SELECT shard, min(token_id) AS lo, max(token_id) AS hi FROM tokens "
                            "WHERE release = 'many' GROUP BY ALL ORDER BY ALL").to_pylist()
    assert [r["shard"] for r in tok_shards] == list(range(5))
    assert all(r["lo"] == 16 * r["shard"] and r["hi"] == min(16 * r["shard"] + 15, 69) for r in tok_shards)
    units = lake.query("SELECT units FROM runs WHERE command = 'harvest' ORDER BY finished_at DESC LIMIT 1")
    assert units.column("units")[0].as_py() == [f"shard={s}" for s in range(5)]
    # a shorter re-run drops the shards it no longer has, and the old tokens and examples
    code, out, err = saew("harvest", "--release", "many", *args[:5], 20, *args[6:], "--shard-tokens", 16)
    assert code == 0, err
    assert lake.query("SELECT max(shard) AS s, max(token_id) AS t FROM activations WHERE release = 'many'"
                      ).to_pylist() == [{"s": 1, "t": 19}]
    assert lake.query("SELECT count(*) AS n FROM tokens WHERE release = 'many'").column("n")[0].as_py() == 20
    assert lake.query("SELECT max(token_id) AS t FROM examples WHERE release = 'many'").column("t")[0].as_py() < 20


def test_bad_shard_tokens(saew, lake, tmp_path):
    put_sae(lake, "r", 0, make_sae(384, 8, "relu"))
    code, _, err = saew("harvest", "--release", "r", "--model", "minilm", "--corpus",
                        write_txt(tmp_path / "c.txt"), "--tokens", 10, "--shard-tokens", 0)
    assert code == 2 and "--shard-tokens 0: must be positive" in err
    assert not lake.has_data("activations")


def test_a_killed_harvest_keeps_its_shards_and_the_rerun_does_the_rest(saew, lake, monkeypatch, tmp_path):
    import saew.compute.activations.harvest as step

    corpus = write_txt(tmp_path / "c.txt")
    put_sae(lake, "r", 2, make_sae(384, 32, "relu", seed=1))
    args = ["harvest", "--release", "r", "--model", "minilm", "--corpus", corpus, "--tokens", 70,
            "--batch-size", 1, "--seq-len", 24, "--examples", 3, "--shard-tokens", 16]
    real, written = step.write_shard, []

    def killed_at_2(lake_, release, shard, by_layer, tokens=None):
        written.append(shard)
        if shard == 2:
            raise RuntimeError("killed at shard 2")
        return real(lake_, release, shard, by_layer, tokens)

    monkeypatch.setattr(step, "write_shard", killed_at_2)
    with pytest.raises(RuntimeError, match="killed at shard 2"):
        saew(*args)
    assert lake.query("SELECT DISTINCT shard FROM activations ORDER BY 1").column("shard").to_pylist() == [0, 1]
    assert lake.query("SELECT status, units FROM runs WHERE command = 'harvest'").to_pylist() == [
        {"status": "partial", "units": ["shard=0", "shard=1"]}]
    assert not lake.has_data("activation_sets")      # a half-finished harvest has no N yet
    assert lake.query("SELECT DISTINCT shard FROM tokens ORDER BY 1").column("shard").to_pylist() == [0, 1]

    written.clear()
    monkeypatch.setattr(step, "write_shard", lambda *a: (written.append(a[2]), real(*a))[1])
    forwards = []
    from saew.compute.lm import model as lm

    real_forward = lm.LoadedModel._forward
    monkeypatch.setattr(lm.LoadedModel, "_forward",
                        lambda self, seqs, *a: (forwards.append(sum(map(len, seqs))), real_forward(self, seqs, *a))[1])
    code, out, err = saew(*args)
    assert code == 0, err
    assert written == [2, 3, 4] and "kept 2 unit(s)" in out
    assert sum(forwards) < 70 - 16                    # the finished shards' batches were not run
    # the same rows as one uninterrupted run
    other = tmp_path / "other"
    from saew.storage.lake import Lake

    put_sae(Lake(other), "r", 2, make_sae(384, 32, "relu", seed=1))
    assert saew(*args, home_dir=other)[0] == 0
    assert _harvest_rows(lake, "r") == _harvest_rows(Lake(other), "r")


def test_ranged_running_sums_over_many_shards_equal_one_pass(lake):
    """The running pair sums kept in source-feature ranges (coactivation.RangedCounts,
    correlate.Pairs) over 9 token blocks, with pairs first met in late blocks and ranges with no
    pair until then: the same n_ab and correlation columns as one pass over every token."""
    from saew.compute.activations.coactivation import RangedCounts, coactivation_counts, row_ranges
    from saew.compute.activations.correlate import correlate_blocks, correlate_layers
    from saew.storage.reads import Activity

    n, cut = 900, 100
    x = sparse_matrix(n, 70, 0.04, seed=5)
    y = sparse_matrix(n, 50, 0.05, seed=6)
    x[:600, 50:] = 0                          # source features 50.. (the last ranges) start late
    y[:450, :25] = 0

    def act(m: np.ndarray, lo: int = 0, hi: int = n) -> Activity:
        r, f = np.nonzero(m[lo:hi])
        return Activity((r + lo).astype(np.int64), f.astype(np.int32), m[lo:hi][r, f].astype(np.float32),
                        m.shape[1], n)

    assert row_ranges(70).tolist()[:3] == [0, 4, 8] and row_ranges(70)[-1] == 70 and len(row_ranges(3)) == 4
    whole = coactivation_counts(act(x))
    ranged = RangedCounts(70)
    for lo in range(0, n, cut):
        ranged.add(coactivation_counts(act(x, lo, lo + cut)))
    got = ranged.total()
    assert all(np.array_equal(g, w) and g.dtype == w.dtype for g, w in zip(got, whole))
    assert ranged.parts == [None] * (len(row_ranges(70)) - 1)    # released as copied

    one, _ = correlate_layers(act(x), act(y))
    blocks = [(lambda lo=lo: (act(x, lo, lo + cut), act(y, lo, lo + cut))) for lo in range(0, n, cut)]
    many, _ = correlate_blocks(blocks)
    assert one["src_feature"].size and set(one) == set(many)
    for col in one:
        np.testing.assert_array_equal(many[col], one[col])   # bit for bit, NaN where NULL
