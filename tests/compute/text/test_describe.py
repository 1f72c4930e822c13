"""``saew describe``: top-token descriptions checked against hand-written expectations."""
from __future__ import annotations

import pytest

from tests.factories import make_sae, put_sae
from saew.storage import catalog

# doc 0: "def f(self):\n    return x\n = 1"  doc 1: " return self"
TOKENS = {
    "token_id": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    "doc": [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0],
    "pos": [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 8, 9],
    "token": ["def", " f", "(", "self", "):", "\n    return", " x", "\n", " return", " self", " =", " 1"],
}


def _put(lake, acts: dict[int, list[tuple[int, int, float]]], descriptions=None, tokens=True):
    put_sae(lake, "r", 0, make_sae(8, 6, "relu"))
    put_sae(lake, "r", 1, make_sae(8, 6, "relu", seed=1))
    with lake.transaction():
        if tokens:
            lake.write("tokens", TOKENS, release="r")
        for layer, rows in acts.items():
            lake.write("activations", {"token_id": [r[0] for r in rows], "feature": [r[1] for r in rows],
                                       "value": [r[2] for r in rows]}, release="r", layer=layer)
            lake.write("activation_sets", {"n_tokens": [10], "source": ["test"], "run_id": ["t"]},
                       release="r", layer=layer)
        for layer, rows in (descriptions or {}).items():
            lake.write("descriptions", {"feature": [r[0] for r in rows], "description": [r[1] for r in rows],
                                        "explainer": ["np"] * len(rows), "source": ["neuronpedia"] * len(rows)},
                       release="r", layer=layer)
    catalog.refresh(lake)


def _descriptions(lake, layer: int) -> dict[int, tuple[str, str, str]]:
    t = lake.query("SELECT feature, description, explainer, source FROM descriptions "
                   "WHERE release = 'r' AND layer = ? ORDER BY feature", [layer]).to_pylist()
    return {r["feature"]: (r["description"], r["explainer"], r["source"]) for r in t}


ACTS = {0: [
    (0, 0, 5.0),                      # feature 0 has a Neuronpedia description: kept as is
    (0, 1, 1.0), (3, 1, 2.0), (5, 1, 3.0), (8, 1, 2.5), (9, 1, 2.0),
    # feature 2: " return" at 5 and 8 (max 4.0 at token 8, leading whitespace folded), "self"
    # at 3 and " self" at 9 stay apart; tie 1.5 between "(" (id 2) and " x" (id 6) -> id order
    (5, 2, 1.0), (8, 2, 4.0), (3, 2, 2.0), (9, 2, 0.5), (2, 2, 1.5), (6, 2, 1.5),
    # feature 3: dead (no rows); feature 4 only once, at the start of doc 0
    (0, 4, 0.1),
], 1: [(7, 5, 1.0), (11, 4, 1.0)]}


def test_descriptions_from_top_tokens(lake, saew):
    _put(lake, ACTS, {0: [(0, "Neuronpedia says: function definitions")]})
    code, out, err = saew("describe", "--release", "r", "--top", "3")
    assert code == 0, err
    d = _descriptions(lake, 0)
    assert d[0] == ("Neuronpedia says: function definitions", "np", "neuronpedia")
    # feature 1: " return" 3.0 (token 5, shown with its whitespace folded), " return" again at 8 is
    # the same word; " self" 2.0 (token 9) vs "self" 2.0 (token 3): tie -> token 3 first
    assert d[1] == ('top tokens: " return", "self", " self" | strongest: "def f(self):[[\\n    return]] x\\n ="',
                    "saew-top-tokens", "top-tokens")
    assert d[2][0] == 'top tokens: " return", "self", "(" | strongest: " return self"'.replace(
        '" return self"', '"[[ return]] self"')
    assert 3 not in d and 5 not in d
    assert d[4][0] == 'top tokens: "def" | strongest: "[[def]] f(self"'  # 3 tokens after
    d1 = _descriptions(lake, 1)
    assert d1[5][0] == 'top tokens: "\\n" | strongest: "def f(self):\\n    return x[[\\n]] = 1"'
    assert d1[4][0] == 'top tokens: " 1" | strongest: "... f(self):\\n    return x\\n =[[ 1]]"'  # 8 before
    assert "(L0: 3, L1: 2 features)" in out


def test_rerun_replaces_own_rows_and_never_duplicates(lake, saew):
    _put(lake, ACTS, {0: [(0, "from neuronpedia")]})
    assert saew("describe", "--release", "r")[0] == 0
    first = _descriptions(lake, 0)
    assert saew("describe", "--release", "r")[0] == 0
    assert _descriptions(lake, 0) == first
    # new activations (a new harvest): the top-tokens rows follow, Neuronpedia's stay
    with lake.transaction():
        lake.write("activations", {"token_id": [1], "feature": [1], "value": [9.0]}, release="r", layer=0)
    catalog.refresh(lake)
    assert saew("describe", "--release", "r", "--top", "1")[0] == 0
    d = _descriptions(lake, 0)
    assert set(d) == {0, 1} and d[0][0] == "from neuronpedia"
    assert d[1][0] == 'top tokens: " f" | strongest: "def[[ f]](self):"'
    n = lake.query("SELECT count(*) - count(DISTINCT (layer, feature)) AS dup FROM descriptions")
    assert n.column("dup")[0].as_py() == 0


@pytest.mark.parametrize("case, message", [
    ("release", "no SAE ingested"),
    ("no-activations", "no activations"),
    ("no-tokens", "no tokens"),
    ("top", "--top: 0"),
])
def test_describe_bad_input(case, message, lake, saew):
    if case == "no-activations":
        _put(lake, {})
    elif case != "release":
        _put(lake, ACTS, tokens=case != "no-tokens")
    before = sorted(p.relative_to(lake.root) for p in lake.root.rglob("*.parquet")) if lake.root.exists() else []
    code, out, err = saew("describe", "--release", "r", *(["--top", "0"] if case == "top" else []))
    assert code == 2 and message in err
    assert err.startswith("saew: error: ") and len(err.strip().splitlines()) == 1
    after = sorted(p.relative_to(lake.root) for p in lake.root.rglob("*.parquet")) if lake.root.exists() else []
    assert after == before and not lake.has_data("descriptions")
