"""``saew ingest descriptions EXPORT_DIR``: a whole Neuronpedia export folder (explanations,
activations, features, UMAP) into descriptions, examples, feature_stats and clusters."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.factories import make_sae, put_sae
from tests.formats import (neuronpedia_activation_row as act, neuronpedia_explanation_row as expl,
                           neuronpedia_neuron_row as neuron, write_neuronpedia_export)

TABLES = ("descriptions", "examples", "feature_stats", "clusters")


@pytest.fixture
def saes(lake):
    put_sae(lake, "r", 6, make_sae(8, 16, seed=0))
    put_sae(lake, "r", 20, make_sae(8, 12, seed=1))
    return lake


def _export(tmp_path, over: dict | None = None):
    src6, src20 = "6-res-jb", "20-gemmascope-res-16k"
    s6 = {
        "explanations": [expl(src6, 1, "dogs", umap=(1.5, -2.0, 3)), expl(src6, 2, "cats", umap=(0.5, 0.25, -1)),
                         expl(src6, 2, "felines", explainer="claude", umap=(9.0, 9.0, 7))],
        "activations": [act(src6, 1, ["a", " dog", " ran"], [0.0, 2.5, 1.0]),
                        act(src6, 1, ["the", " pup"], [0.5, 4.0]),
                        act(src6, 1, ["x"], [1.0], row_id="b"), act(src6, 1, ["y"], [1.0], row_id="a"),
                        act(src6, 2, ["cat", "s"], [3.0, 0.0])],
        "features": [neuron(src6, 1, max_act=4.0, frac=0.01, pos=[(" bark", 1.2), (" woof", 1.1)],
                            neg=[(" meow", -0.9)], cos=[(1, 1.0), (5, 0.4)]),
                     neuron(src6, 2, max_act=3.0, frac=0.002, pos=[], neg=[], cos=[])],
    }
    s20 = {"explanations": [expl(src20, 11, "last one")],  # UMAP at the database default: none
           "features": [neuron(src20, 11, max_act=1.0, frac=0.5, pos=[("a", 1.0)], neg=[], cos=[(11, 1.0)])]}
    sources = {src6: s6, src20: s20}
    for (src, kind), rows in (over or {}).items():
        sources[src][kind] = rows
    return write_neuronpedia_export(tmp_path, "gpt2-small", sources)


def test_export_folder_fills_every_table(saew, saes, tmp_path):
    exports = _export(tmp_path)
    code, out, err = saew("ingest", "descriptions", exports, "--release", "r")
    assert code == 0, err
    assert "5 activation rows" in out and "3 feature rows" in out and "4 explanation rows" in out
    d = saes.query("SELECT layer, feature, description, explainer FROM descriptions ORDER BY 1, 2").to_pylist()
    assert [(r["layer"], r["feature"], r["description"]) for r in d] == [(6, 1, "dogs"), (6, 2, "felines"),
                                                                        (20, 11, "last one")]
    ex = saes.query("SELECT * FROM examples ORDER BY layer, feature, kind, rank").to_pylist()
    assert [(r["layer"], r["feature"], r["kind"], r["rank"]) for r in ex] == \
        [(6, 1, "top", 0), (6, 1, "top", 1), (6, 1, "top", 2), (6, 1, "top", 3), (6, 2, "top", 0)]
    assert [r["value"] for r in ex] == [4.0, 2.5, 1.0, 1.0, 3.0]
    assert ex[0]["tokens"] == ["the", " pup"] and ex[0]["acts"] == [0.5, 4.0] and ex[0]["peak"] == 1
    assert ex[1]["tokens"] == ["a", " dog", " ran"] and ex[1]["peak"] == 1
    assert [ex[2]["tokens"], ex[3]["tokens"]] == [["y"], ["x"]]  # equal maxValue: by row id
    assert all(r["token_id"] is None for r in ex)
    st = saes.query("SELECT * FROM feature_stats ORDER BY layer, feature").to_pylist()
    assert [(r["layer"], r["feature"]) for r in st] == [(6, 1), (6, 2), (20, 11)]
    s = st[0]
    assert s["max_act"] == 4.0 and s["frac_nonzero"] == 0.01 and s["source"] == "neuronpedia"
    assert s["pos_str"] == [" bark", " woof"] and s["pos_values"] == pytest.approx([1.2, 1.1])
    assert s["neg_str"] == [" meow"] and s["neg_values"] == pytest.approx([-0.9])
    assert s["topk_cos_indices"] == [1, 5] and s["topk_cos_values"] == pytest.approx([1.0, 0.4])
    assert st[1]["pos_str"] == [] and st[1]["topk_cos_indices"] == []
    cl = saes.query("SELECT layer, feature, cluster, probability, x, y FROM clusters "
                    "WHERE space = 'neuronpedia' ORDER BY layer, feature").to_pylist()
    assert [r["layer"] for r in cl] == [6] * 16  # layer 20's UMAP is the all-zero default
    by = {r["feature"]: r for r in cl}
    assert (by[1]["cluster"], by[1]["x"], by[1]["y"]) == (3, 1.5, -2.0)
    assert (by[2]["cluster"], by[2]["x"]) == (9 - 2, 9.0)  # the kept explanation's ("claude" < "gpt-4o-mini")
    assert all(by[f]["cluster"] == -2 and by[f]["x"] is None for f in by if f not in (1, 2))
    assert all(r["probability"] is None for r in cl)
    # re-ingesting is idempotent
    before = {t: saes.query(f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in TABLES}
    code, _, err = saew("ingest", "descriptions", exports, "--release", "r")
    assert code == 0, err
    assert before == {t: saes.query(f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in TABLES}


def test_layer_option_and_single_source_folder(saew, saes, tmp_path):
    exports = _export(tmp_path)
    code, _, err = saew("ingest", "descriptions", exports / "gpt2-small" / "20-gemmascope-res-16k",
                        "--release", "r", "--layer", "6")
    assert code == 0, err
    assert saes.query("SELECT layer, feature FROM feature_stats").to_pylist() == [{"layer": 6, "feature": 11}]


def _nothing(lake) -> bool:
    return not any(lake.has_data(t) for t in TABLES)


@pytest.mark.parametrize("kind,rows,expect", [
    ("activations", [act("6-res-jb", 1, ["a"], [1.0]), {**act("6-res-jb", 2, ["a", "b"], [1.0, 2.0]), "values": [1.0]}],
     "tokens and values"),
    ("activations", [{**act("6-res-jb", 1, ["a"], [1.0]), "maxValueTokenIndex": 3}], "maxValueTokenIndex"),
    ("activations", [{**act("6-res-jb", 1, ["a"], [1.0]), "maxValue": "big"}], "maxValue"),
    ("activations", [act("6-res-jb", 16, ["a"], [1.0])], "out of range"),
    ("features", [neuron("6-res-jb", 1, max_act=1, frac=0.1, pos=[], neg=[], cos=[])] * 2, "appears twice"),
    ("features", [{**neuron("6-res-jb", 1, max_act=1, frac=0.1, pos=[], neg=[], cos=[]), "pos_values": [1.0]}],
     "pos_str and pos_values"),
    ("features", [{**neuron("6-res-jb", 1, max_act=1, frac=0.1, pos=[], neg=[], cos=[]), "frac_nonzero": 2}],
     "frac_nonzero"),
    ("features", [{**neuron("6-res-jb", 1, max_act=1, frac=0.1, pos=[], neg=[], cos=[]), "index": "x1"}],
     "feature index"),
    ("explanations", [{**expl("6-res-jb", 1, "d"), "umap_cluster": "c"}], "umap_cluster"),
])
def test_bad_rows_name_file_and_line(saew, saes, tmp_path, kind, rows, expect):
    exports = _export(tmp_path, {("6-res-jb", kind): rows})
    code, out, err = saew("ingest", "descriptions", exports, "--release", "r")
    assert code == 2 and expect in err, err
    assert len(err.strip().splitlines()) == 1 and f"/6-res-jb/{kind}/batch-" in err and ".jsonl.gz:" in err
    assert _nothing(saes)


def test_bad_gzip_batch(saew, saes, tmp_path):
    exports = _export(tmp_path)
    f = exports / "gpt2-small" / "6-res-jb" / "features" / "batch-0.jsonl.gz"
    data = gzip.compress(b"".join(json.dumps(neuron("6-res-jb", i, max_act=1, frac=0, pos=[], neg=[], cos=[]))
                                  .encode() + b"\n" for i in range(8)))
    f.write_bytes(data[:len(data) // 2])
    code, _, err = saew("ingest", "descriptions", exports, "--release", "r")
    assert code == 2 and "truncated or corrupt gzip" in err and str(f) in err
    assert _nothing(saes)
