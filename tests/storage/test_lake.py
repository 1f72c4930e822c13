"""The lake: atomic partition writes, transactions, catalog views, release names."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.factories import make_sae, put_sae
from saew.errors import BadInput
from saew.storage.lake import Lake, check_release
from saew.storage.saes import load_sae
from saew.storage.schemas import TABLES


def test_release_names():
    for good in ["gpt2-small", "a", "v5_32k.res", "A" * 100]:
        assert check_release(good) == good
    for bad in ["", "../x", "a/b", "-a", ".hidden", "a b", "A" * 101, "x\n"]:
        with pytest.raises(BadInput):
            check_release(bad)


def test_sae_roundtrip_and_replace(lake: Lake):
    p = make_sae(8, 24, "jumprelu", seed=1)
    put_sae(lake, "r", 3, p)
    put_sae(lake, "r", 3, p)  # re-ingest replaces, never duplicates
    q = load_sae(lake, "r", 3)
    np.testing.assert_array_equal(q.w_dec, p.w_dec)
    np.testing.assert_array_equal(q.w_enc, p.w_enc)
    np.testing.assert_array_equal(q.threshold, p.threshold)
    assert lake.query("select count(*) n from features").column("n")[0].as_py() == 24
    f = lake.table_dir("features") / "release=r" / "layer=3" / "part-0.parquet"
    assert f.exists()
    md = pq.ParquetFile(f).metadata
    assert md.row_group(0).column(0).compression == "ZSTD"


def test_views_have_contract_columns(lake: Lake):
    put_sae(lake, "r", 0, make_sae())
    con = lake.connect()
    for name, t in TABLES.items():
        cols = [r[0] for r in con.execute(f'DESCRIBE "{name}"').fetchall()]
        assert cols == t.schema.names, name


def test_failed_transaction_changes_nothing(lake: Lake):
    put_sae(lake, "r", 0, make_sae(seed=0))
    before = load_sae(lake, "r", 0)
    with pytest.raises(RuntimeError):
        with lake.transaction():
            from saew.storage.saes import write_sae
            write_sae(lake, "r", 0, make_sae(seed=5), source_format="t", source_path="p",
                      source_sha256="", run_id="x")
            raise RuntimeError("boom")
    np.testing.assert_array_equal(load_sae(lake, "r", 0).w_dec, before.w_dec)
    assert not (lake.home / ".staging").exists() or not any((lake.home / ".staging").iterdir())


def test_interrupted_legacy_commit_rolls_forward(home):
    """A journal the lake before the version store left (killed mid-commit) is completed by
    the next writer; one naming another home (this one is a copy) is ignored."""
    import json

    import pyarrow as pa

    def tl(n: int) -> pa.Table:
        z = pa.array([0.0] * n)
        return pa.table({"step": pa.array(range(n), pa.int32()), "tokens_seen": pa.array(range(n), pa.int64()),
                         "mse": z, "fvu": z, "l0": z, "dead_frac": z})

    dst = home / "lake" / "training_log" / "release=r" / "layer=0" / "part-0.parquet"
    src = home / ".staging" / "killed" / "lake" / "training_log" / "release=r" / "layer=0" / "part-0.parquet"
    for p, n in ((dst, 2), (src, 5)):
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tl(n), p)
    elsewhere = home.parent / "other" / "part-0.parquet"
    ops = [{"op": "replace", "src": str(src), "dst": str(dst)},
           {"op": "delete", "path": str(elsewhere.parent)}]
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"x")
    (home / ".journal.json").write_text(json.dumps(ops))
    with Lake(home).write_lock():
        pass
    assert Lake(home).query("SELECT count(*) n FROM training_log").column("n")[0].as_py() == 5
    assert elsewhere.exists() and not (home / ".journal.json").exists()


def test_sources_file_is_generated_from_schemas():
    from saew.storage.dbt_sources import SOURCES_FILE, render

    assert SOURCES_FILE.read_text() == render(), "run: python -m saew.storage.dbt_sources"


def test_null_draw_names_round_trip():
    from saew.storage.names import null_draw_index, null_draw_method

    assert [null_draw_method(i) for i in range(3)] == ["random", "random.1", "random.2"]
    assert [null_draw_index(null_draw_method(i)) for i in range(12)] == list(range(12))
    assert null_draw_index("folded") is None and null_draw_index("random.0") is None
    assert null_draw_index("random.01") is None and null_draw_index("randomly") is None
