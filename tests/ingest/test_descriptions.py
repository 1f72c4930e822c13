"""``saew ingest descriptions``: Neuronpedia bulk rows, .json lists, per-feature API JSON."""
from __future__ import annotations

import gzip

import pytest

from tests.factories import make_sae, put_sae
from tests.formats import (neuronpedia_feature, neuronpedia_row, write_json, write_jsonl,
                           write_jsonl_gz)
from saew.storage.lake import Lake


@pytest.fixture
def two_layers(lake: Lake) -> Lake:
    put_sae(lake, "r", 6, make_sae(8, 16, seed=0))
    put_sae(lake, "r", 7, make_sae(8, 12, seed=1))
    return lake


def _descs(lake: Lake, layer: int) -> dict[int, tuple[str, str, str]]:
    t = lake.query("SELECT feature, description, explainer, source FROM descriptions "
                   "WHERE release='r' AND layer=? ORDER BY feature", [layer])
    return {r["feature"]: (r["description"], r["explainer"], r["source"]) for r in t.to_pylist()}


def test_bulk_jsonl_gz(saew, two_layers, tmp_path):
    rows = [neuronpedia_row(6, "3", "dogs"), neuronpedia_row(6, 5, "cats"), neuronpedia_row(7, "11", "end")]
    f = write_jsonl_gz(tmp_path / "explanations" / "batch-0.jsonl.gz", rows)
    code, out, err = saew("ingest", "descriptions", f, "--release", "r")
    assert code == 0, err
    assert _descs(two_layers, 6) == {3: ("dogs", "gpt-4o-mini", "neuronpedia"), 5: ("cats", "gpt-4o-mini", "neuronpedia")}
    assert _descs(two_layers, 7) == {11: ("end", "gpt-4o-mini", "neuronpedia")}


def test_folder_json_list_and_per_feature_api(saew, two_layers, tmp_path):
    write_json(tmp_path / "dump" / "a.json", [neuronpedia_row(6, 1, "one"), neuronpedia_row(6, 2, "two")])
    write_json(tmp_path / "dump" / "feat.json",
               neuronpedia_feature(6, 4, [("four b", "gpt-4o-mini"), ("four a", "claude-3")]))
    write_jsonl(tmp_path / "dump" / "c.jsonl", [neuronpedia_row(6, 9, "nine")])
    code, _, err = saew("ingest", "descriptions", tmp_path / "dump", "--release", "r")
    assert code == 0, err
    d = _descs(two_layers, 6)
    assert {k: v[0] for k, v in d.items()} == {1: "one", 2: "two", 4: "four a", 9: "nine"}
    assert d[4][1] == "claude-3"


def test_several_explanations_keep_smallest_explainer_then_description(saew, two_layers, tmp_path):
    """Rule: drop empty descriptions, keep min (explanationModelName, description); order-independent."""
    rows = [neuronpedia_row(6, 0, "zeta", explainer="gpt-4"), neuronpedia_row(6, 0, "alpha", explainer="gpt-4"),
            neuronpedia_row(6, 0, "first", explainer="gpt-5"), neuronpedia_row(6, 0, "", explainer="a-model")]
    for i, order in enumerate([rows, rows[::-1]]):
        f = write_jsonl(tmp_path / f"x{i}.jsonl", order)
        assert saew("ingest", "descriptions", f, "--release", "r")[0] == 0
        assert _descs(two_layers, 6) == {0: ("alpha", "gpt-4", "neuronpedia")}


def test_layer_option_merge_and_reingest(saew, two_layers, tmp_path):
    f1 = write_jsonl(tmp_path / "a.jsonl", [neuronpedia_row(0, 1, "old one"), neuronpedia_row(0, 2, "two")])
    assert saew("ingest", "descriptions", f1, "--release", "r", "--layer", "7")[0] == 0
    f2 = write_jsonl(tmp_path / "b.jsonl", [neuronpedia_row(0, 1, "new one"), neuronpedia_row(0, 3, "three")])
    assert saew("ingest", "descriptions", f2, "--release", "r", "--layer", "7")[0] == 0
    assert saew("ingest", "descriptions", f2, "--release", "r", "--layer", "7")[0] == 0  # idempotent
    assert {k: v[0] for k, v in _descs(two_layers, 7).items()} == {1: "new one", 2: "two", 3: "three"}
    assert _descs(two_layers, 6) == {}


# ---------------------------------------------------------------- bad input
def _bad(saew, lake: Lake, *args, expect: str) -> None:
    code, out, err = saew("ingest", "descriptions", *args)
    assert code == 2, (out, err)
    assert err.startswith("saew: error: ") and err.count("\n") == 1 and expect in err, err
    assert not lake.has_data("descriptions")


def test_bad_malformed_json_line(saew, two_layers, tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"layer": "6-res-jb", "index": "1", "description": "ok"}\n{"layer": "6-res-jb", "index":\n')
    _bad(saew, two_layers, f, "--release", "r", expect=f"{f}:2: malformed JSON line")


def test_bad_gz_not_gzip_and_truncated(saew, two_layers, tmp_path):
    f = tmp_path / "batch-0.jsonl.gz"
    f.write_text('{"layer": "6-res-jb", "index": "1", "description": "ok"}\n')
    _bad(saew, two_layers, f, "--release", "r", expect="batch-0.jsonl.gz: not a gzip file")
    g = write_jsonl_gz(tmp_path / "batch-1.jsonl.gz", [neuronpedia_row(6, i, "d" * 50) for i in range(16)])
    g.write_bytes(g.read_bytes()[:-30])
    _bad(saew, two_layers, g, "--release", "r", expect="batch-1.jsonl.gz: truncated or corrupt gzip")


def test_bad_layer_or_feature_that_does_not_exist(saew, two_layers, tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", [neuronpedia_row(6, 1, "ok"), neuronpedia_row(8, 1, "no sae")])
    _bad(saew, two_layers, f, "--release", "r", expect="layer 8 has no SAE ingested")
    g = write_jsonl(tmp_path / "b.jsonl", [neuronpedia_row(7, 12, "too far")])
    _bad(saew, two_layers, g, "--release", "r", expect="feature 12 is out of range")
    h = write_jsonl(tmp_path / "c.jsonl", [neuronpedia_row(6, "-1", "negative")])
    _bad(saew, two_layers, h, "--release", "r", expect="non-negative integer")
    _bad(saew, two_layers, g, "--release", "nope", expect="layer 7 has no SAE ingested in release 'nope'")


def test_bad_layer_name_missing_path_and_release(saew, two_layers, tmp_path):
    f = write_json(tmp_path / "a.json", [{"layer": "res-jb", "index": 1, "description": "x"}])
    _bad(saew, two_layers, f, "--release", "r", expect="cannot read a layer")
    _bad(saew, two_layers, tmp_path / "missing.jsonl", "--release", "r", expect="no such file")
    _bad(saew, two_layers, f, "--release", "../r", expect="release names must match")
    bad_json = tmp_path / "b.json"
    bad_json.write_text("[{]")
    _bad(saew, two_layers, bad_json, "--release", "r", expect="b.json: not valid JSON")
    txt = tmp_path / "c.txt"
    txt.write_text("hi")
    _bad(saew, two_layers, txt, "--release", "r", expect="expected a .json, .jsonl or .jsonl.gz")
    with gzip.open(tmp_path / "d.jsonl.gz", "wb") as fh:
        fh.write(b"\xff\xfe\n")
    _bad(saew, two_layers, tmp_path / "d.jsonl.gz", "--release", "r", expect="not UTF-8")
