"""``saew harvest``: activations against an independent numpy encoder over HF hidden states."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from saew.compute.activations.harvest import HarvestConfig, harvest
from saew.compute.lm.load import load_model, load_model_from_tl
from tests.factories import make_sae, put_sae
from tests.factories_harvest import DOCS, np_encode, tiny_tl_model, write_txt
from saew.storage.context import Context

N = 40


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def _hidden_states(m, docs: list[str], n: int) -> tuple[torch.Tensor, ...]:
    """HF hidden_states of the first n real tokens, each document run alone as
    [CLS] tokens [SEP] (an oracle independent of iter_batches' batching and padding;
    the docs are shorter than one sequence)."""
    per_doc = []
    left = n
    for d in docs:
        ids = m.tokenizer(d, add_special_tokens=False)["input_ids"]
        k = min(left, len(ids))  # the last document is cut where the run stops
        full = torch.tensor([[m.tokenizer.cls_token_id, *ids[:k], m.tokenizer.sep_token_id]])
        with torch.no_grad():
            hs = m.module(input_ids=full, output_hidden_states=True).hidden_states
        per_doc.append([h[0, 1:1 + k] for h in hs])
        left -= k
        if left == 0:
            break
    return tuple(torch.cat([p[i] for p in per_doc]) for i in range(len(per_doc[0])))


def _dense(lake, release: str, layer: int, n: int, d_sae: int) -> np.ndarray:
    t = lake.query("SELECT token_id, feature, value FROM activations WHERE release = ? AND layer = ?",
                   [release, layer])
    out = np.zeros((n, d_sae))
    out[t.column("token_id").to_numpy(), t.column("feature").to_numpy()] = t.column("value").to_numpy()
    return out


def _nothing_written(lake) -> bool:
    return not any(lake.has_data(t) for t in ("tokens", "activations", "activation_sets", "runs"))


def test_harvest_minilm_three_architectures(minilm, lake, saew, tmp_path):
    saes = {
        1: make_sae(384, 48, "relu", seed=1, hook="blocks.1.hook_resid_post", model="minilm"),
        3: make_sae(384, 48, "jumprelu", seed=2, threshold_scale=2.0, normalize="layer_norm"),
        5: make_sae(384, 48, "topk", seed=3, k=5, apply_b_dec_to_input=False),
    }
    for L, p in saes.items():
        put_sae(lake, "r", L, p)
    corpus = write_txt(tmp_path / "c.txt")
    code, out, err = saew("harvest", "--release", "r", "--model", "minilm", "--corpus", corpus,
                          "--tokens", N, "--batch-size", 2, "--seq-len", 64)
    assert code == 0, err
    assert f"harvested {N} tokens" in out
    hs = _hidden_states(minilm, DOCS, N)
    for L, p in saes.items():
        expected = np_encode(hs[L + 1].numpy(), p)
        got = _dense(lake, "r", L, N, 48)
        np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)
        assert (got != 0).sum() == (expected != 0).sum()  # zeros are not stored
    rows = lake.query("SELECT layer, count(*) AS n, min(value) AS lo FROM activations GROUP BY layer "
                      "ORDER BY layer").to_pylist()
    assert [r["layer"] for r in rows] == [1, 3, 5] and all(r["lo"] != 0 for r in rows)
    assert lake.query("SELECT count(*) AS n FROM activations WHERE layer = 5").column("n")[0].as_py() <= 5 * N
    sets = lake.query("SELECT layer, n_tokens, source, run_id FROM activation_sets ORDER BY layer").to_pylist()
    assert [(s["layer"], s["n_tokens"], s["source"]) for s in sets] == [(1, N, "harvest"), (3, N, "harvest"), (5, N, "harvest")]
    run_ids = lake.query("SELECT run_id FROM runs WHERE command = 'harvest'").column("run_id").to_pylist()
    assert {s["run_id"] for s in sets} == set(run_ids) and len(run_ids) == 1
    tok = lake.query("SELECT token_id, doc, pos, token FROM tokens ORDER BY token_id").to_pydict()
    assert tok["token_id"] == list(range(N))
    for d in set(tok["doc"]):
        sel = [i for i in range(N) if tok["doc"][i] == d]
        assert [tok["pos"][i] for i in sel] == list(range(len(sel)))
        assert DOCS[d].startswith("".join(tok["token"][i] for i in sel))
    # re-running replaces the slices, never duplicates
    code, out, err = saew("harvest", "--release", "r", "--model", "minilm", "--corpus", corpus,
                          "--tokens", 25)
    assert code == 0, err
    assert lake.query("SELECT count(*) AS n, max(token_id) AS m FROM tokens").to_pylist() == [{"n": 25, "m": 24}]
    assert lake.query("SELECT max(token_id) AS m FROM activations").column("m")[0].as_py() == 24
    assert lake.query("SELECT DISTINCT n_tokens FROM activation_sets").column("n_tokens").to_pylist() == [25]
    assert lake.query("SELECT count(*) - count(DISTINCT (layer, token_id, feature)) AS d FROM activations"
                      ).column("d")[0].as_py() == 0


def test_harvest_resid_pre_hook_and_short_corpus(minilm, lake, saew, tmp_path):
    p = make_sae(384, 16, "relu", seed=4, hook="blocks.2.hook_resid_pre")
    put_sae(lake, "pre", 2, p)
    corpus = write_txt(tmp_path / "c.txt", DOCS[:1])
    code, out, err = saew("harvest", "--release", "pre", "--model", "minilm", "--corpus", corpus,
                          "--tokens", 10_000)
    assert code == 0, err
    n = len(minilm.tokenizer(DOCS[0], add_special_tokens=False)["input_ids"])
    assert "corpus ended" in out
    assert lake.query("SELECT n_tokens FROM activation_sets").column("n_tokens").to_pylist() == [n]
    hs = _hidden_states(minilm, DOCS[:1], n)
    np.testing.assert_allclose(_dense(lake, "pre", 2, n, 16), np_encode(hs[2].numpy(), p), atol=2e-4, rtol=1e-4)


def test_harvest_with_a_transformer_lens_model(lake, tmp_path):
    """The TransformerLens path of harvest (a random-init model built in the test)."""
    tl = tiny_tl_model(n_layers=2, d_model=32)
    m = load_model_from_tl(tl, "tiny")
    p = make_sae(32, 24, "relu", seed=5)
    put_sae(lake, "tl", 1, p)
    corpus = write_txt(tmp_path / "c.txt")
    with lake.transaction():
        out = harvest(Context(lake, "run-tl"), HarvestConfig("tl", "tiny", str(corpus), 30, 4, 16), model=m)
    assert "harvested 30 tokens" in out
    ids = [m.prefix + s[2] + m.suffix for s in m.sequences(DOCS, 30, 16)]
    want = []
    for seq, (_, _, real, _) in zip(ids, m.sequences(DOCS, 30, 16)):
        _, cache = tl.run_with_cache(torch.tensor([seq]))
        want.append(cache["blocks.1.hook_resid_post"][0, len(m.prefix):len(m.prefix) + len(real)])
    expected = np_encode(torch.cat(want).numpy(), p)
    np.testing.assert_allclose(_dense(lake, "tl", 1, 30, 24), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["model", "release", "d_in", "tokens", "corpus", "hook"])
def test_harvest_bad_input(case, lake, saew, tmp_path):
    put_sae(lake, "r", 0, make_sae(16 if case == "d_in" else 384, 8, "relu",
                                   hook="blocks.9.hook_resid_post" if case == "hook" else ""))
    corpus = write_txt(tmp_path / "c.txt")
    args = {"model": "minilm", "release": "r", "tokens": "10", "corpus": str(corpus)}
    args.update({"model": {"model": "no-such-model"}, "release": {"release": "other"},
                 "tokens": {"tokens": "0"}, "corpus": {"corpus": str(tmp_path / "missing.txt")}}
                .get(case, {}))
    code, out, err = saew("harvest", *[x for k, v in args.items() for x in (f"--{k}", v)])
    assert code == 2
    assert err.startswith("saew: error: ") and len(err.strip().splitlines()) == 1
    assert {"model": "no-such-model", "release": "no SAE ingested", "d_in": "SAE d_in 16 != d_model 384",
            "tokens": "--tokens", "corpus": "missing.txt: no such file",
            "hook": "outside model 'minilm'"}[case] in err
    assert _nothing_written(lake)


def _rows(lake, table: str, order: str) -> list[dict]:
    cols = {"activations": "layer, shard, token_id, feature, value", "tokens": "token_id, doc, pos, token",
            "examples": "*"}[table]
    return lake.query(f"SELECT {cols} FROM {table} ORDER BY {order}").to_pylist()


def test_harvest_device_cpu_and_auto_write_the_same_rows(minilm, lake, saew, tmp_path):
    """--device: cpu and auto (a GPU when torch sees one, else the CPU) give the same lake rows
    (bit for bit on the CPU); cuda where torch sees none is one line, exit 2, nothing written."""
    put_sae(lake, "r", 2, make_sae(384, 40, "topk", seed=4, k=6))
    corpus = write_txt(tmp_path / "c.txt")
    base = ("harvest", "--release", "r", "--model", "minilm", "--corpus", corpus, "--tokens", 30,
            "--batch-size", 2, "--seq-len", 32, "--shard-tokens", 12)
    got = {}
    for device in ("cpu", "auto"):
        code, out, err = saew(*base, "--device", device)
        assert code == 0, err
        got[device] = [_rows(lake, "activations", "layer, token_id, feature"),
                       _rows(lake, "tokens", "token_id"), _rows(lake, "examples", "ALL")]
    if not torch.cuda.is_available():
        assert got["cpu"] == got["auto"]
    else:   # a GPU's kernels differ in the last bits: the same codes within float tolerance
        assert got["cpu"][1:] != [] and len(got["cpu"][0]) == len(got["auto"][0])
    if not torch.cuda.is_available():
        from saew.storage.lake import Lake

        fresh = Lake(tmp_path / "fresh")
        put_sae(fresh, "r", 2, make_sae(384, 40, "topk", seed=4, k=6))
        code, out, err = saew(*base, "--device", "cuda", home_dir=fresh.home)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "--device cuda: torch sees no CUDA GPU" in err
        assert _nothing_written(fresh)


def test_loaded_model_to_a_device_keeps_the_captures(minilm):
    """LoadedModel.to: the module and each batch's captures on the device (here the CPU, the
    one this machine has), the same residuals as before the move."""
    before = next(minilm.iter_batches(DOCS, 20, [1], batch_size=2, seq_len=32)).resid[1]
    assert minilm.to("cpu") is minilm and minilm.device == "cpu"
    after = next(minilm.iter_batches(DOCS, 20, [1], batch_size=2, seq_len=32)).resid[1]
    assert after.device.type == "cpu" and torch.equal(before, after)
