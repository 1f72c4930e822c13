"""``saew ingest sae``: every format round-trips, sae-lens' own files ingest, bad input exits 2."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.factories import make_sae
from tests.formats import (write_dictionary_learning, write_evil_pt, write_gemmascope, write_openai,
                           write_saelens)
from saew.storage.lake import Lake
from saew.storage.saes import load_sae


def _row(lake: Lake, release: str, layer: int) -> dict:
    t = lake.query("SELECT * FROM saes WHERE release = ? AND layer = ?", [release, layer])
    assert t.num_rows == 1
    return {c: t.column(c)[0].as_py() for c in t.column_names}


def _same(q, p) -> None:
    np.testing.assert_array_equal(q.w_dec, p.w_dec)
    np.testing.assert_array_equal(q.w_enc, p.w_enc)
    np.testing.assert_array_equal(q.b_enc, p.b_enc)
    np.testing.assert_array_equal(q.b_dec, p.b_dec)
    if p.threshold is None:
        assert q.threshold is None
    else:
        np.testing.assert_array_equal(q.threshold, p.threshold)


def _nothing_written(home: Path) -> None:
    lake = Lake(home)
    assert not lake.has_data("saes") and not lake.has_data("features") and not lake.has_data("runs")


# ---------------------------------------------------------------- round trips per format
@pytest.mark.parametrize("arch", ["relu", "jumprelu", "topk"])
def test_saelens_v6_roundtrip(saew, home, tmp_path, arch):
    p = make_sae(12, 20, arch, seed=1, k=3 if arch == "topk" else None)
    folder = write_saelens(tmp_path / "sae", p, hook="blocks.4.hook_resid_post", model="gpt2")
    code, out, err = saew("ingest", "sae", folder, "--release", "r")
    assert code == 0, err
    lake = Lake(home)
    q = load_sae(lake, "r", 4)
    _same(q, p)
    row = _row(lake, "r", 4)
    assert row["architecture"] == arch and row["k"] == p.k and row["model"] == "gpt2"
    assert row["hook"] == "blocks.4.hook_resid_post" and row["source_format"] == "saelens"
    w = folder / "sae_weights.safetensors"
    assert row["source_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    # the lake's decoder row of feature i equals the file's W_dec[i] (SAELens orientation)
    from safetensors.numpy import load_file
    f = lake.query("SELECT w_dec, w_enc FROM features WHERE release='r' AND layer=4 AND feature=7")
    np.testing.assert_array_equal(np.array(f.column("w_dec")[0].as_py(), np.float32), load_file(str(w))["W_dec"][7])
    np.testing.assert_array_equal(np.array(f.column("w_enc")[0].as_py(), np.float32), load_file(str(w))["W_enc"][:, 7])


def test_saelens_pre6_config_and_file_path(saew, home, tmp_path):
    p = make_sae(8, 16, "topk", seed=2, k=4)
    folder = write_saelens(tmp_path / "old", p, hook="blocks.2.hook_resid_pre", pre6=True)
    code, _, err = saew("ingest", "sae", folder / "sae_weights.safetensors", "--release", "r")
    assert code == 0, err
    row = _row(Lake(home), "r", 2)
    assert row["architecture"] == "topk" and row["k"] == 4 and row["hook"] == "blocks.2.hook_resid_pre"
    _same(load_sae(Lake(home), "r", 2), p)


def test_saelens_bf16_weights_widen_exactly(saew, home, tmp_path):
    import torch
    from safetensors.torch import save_file

    p = make_sae(8, 16, "relu", seed=3)
    folder = write_saelens(tmp_path / "bf", p, hook="blocks.0.hook_resid_post")
    t = {k: torch.from_numpy(np.ascontiguousarray(getattr(p, a))).to(torch.bfloat16)
         for k, a in [("W_enc", "w_enc"), ("W_dec", "w_dec"), ("b_enc", "b_enc"), ("b_dec", "b_dec")]}
    save_file(t, str(folder / "sae_weights.safetensors"))
    assert saew("ingest", "sae", folder, "--release", "r")[0] == 0
    np.testing.assert_array_equal(load_sae(Lake(home), "r", 0).w_dec, t["W_dec"].float().numpy())


def test_sae_lens_library_saves_ingest_identically(saew, home, tmp_path):
    """sae-lens' own classes and save_model: standard, jumprelu and topk."""
    import torch
    from sae_lens import (JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE,
                          TopKSAEConfig)

    torch.manual_seed(0)
    built = {}
    for layer, (cls, cfg_cls, kw) in enumerate([(StandardSAE, StandardSAEConfig, {}),
                                                (JumpReLUSAE, JumpReLUSAEConfig, {}),
                                                (TopKSAE, TopKSAEConfig, {"k": 5})]):
        cfg = cfg_cls(d_in=10, d_sae=24, **kw)
        cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
        cfg.metadata.model_name = "gpt2"
        sae = cls(cfg)
        with torch.no_grad():
            for prm in sae.parameters():
                prm.copy_(torch.randn_like(prm))
            if hasattr(sae, "threshold"):
                sae.threshold.copy_(torch.rand_like(sae.threshold) + 0.1)
        sae.save_model(tmp_path / f"sl{layer}")
        built[layer] = {k: v.detach().numpy().copy() for k, v in sae.state_dict().items()}
    code, out, err = saew("ingest", "sae", *[tmp_path / f"sl{i}" for i in range(3)], "--release", "r")
    assert code == 0, err
    lake = Lake(home)
    for layer, arch in enumerate(["relu", "jumprelu", "topk"]):
        q, sd = load_sae(lake, "r", layer), built[layer]
        assert q.architecture == arch
        np.testing.assert_array_equal(q.w_enc, sd["W_enc"])
        np.testing.assert_array_equal(q.w_dec, sd["W_dec"])
        np.testing.assert_array_equal(q.b_enc, sd["b_enc"])
        np.testing.assert_array_equal(q.b_dec, sd["b_dec"])
        if arch == "jumprelu":
            np.testing.assert_array_equal(q.threshold, sd["threshold"])
        else:
            assert q.threshold is None
    assert _row(lake, "r", 2)["k"] == 5


def test_openai_v5_roundtrip(saew, home, tmp_path):
    p = make_sae(12, 40, "topk", seed=4, k=6)
    f = write_openai(tmp_path / "resid_post_mlp_v5_32k" / "autoencoders" / "5.pt", p)
    code, _, err = saew("ingest", "sae", f, "--release", "oai", "--model", "gpt2-small")
    assert code == 0, err
    lake = Lake(home)
    q = load_sae(lake, "oai", 5)
    _same(q, p)
    row = _row(lake, "oai", 5)
    assert (row["architecture"], row["k"], row["normalize"]) == ("topk", 6, "layer_norm")
    assert row["model"] == "gpt2-small" and row["hook"] == "blocks.5.hook_resid_post"
    # decoder row i of the lake == column i of the file's decoder.weight [d, n]
    import torch
    sd = torch.load(f, weights_only=True)
    f9 = lake.query("SELECT w_dec FROM features WHERE release='oai' AND layer=5 AND feature=9")
    np.testing.assert_array_equal(np.array(f9.column(0)[0].as_py(), np.float32), sd["decoder.weight"][:, 9].numpy())
    np.testing.assert_array_equal(q.b_dec, sd["pre_bias"].numpy())


def test_gemmascope_roundtrip(saew, home, tmp_path):
    p = make_sae(12, 20, "jumprelu", seed=5)
    folder = write_gemmascope(tmp_path / "gemma-scope-2b-pt-res", 7, p)
    code, _, err = saew("ingest", "sae", folder, "--release", "g")
    assert code == 0, err
    lake = Lake(home)
    _same(load_sae(lake, "g", 7), p)
    row = _row(lake, "g", 7)
    assert row["architecture"] == "jumprelu" and row["apply_b_dec_to_input"] is False
    assert row["model"] == "gemma-2-2b" and row["hook"] == "blocks.7.hook_resid_post"
    z = np.load(folder / "params.npz")
    f3 = lake.query("SELECT w_dec, threshold FROM features WHERE release='g' AND layer=7 AND feature=3")
    np.testing.assert_array_equal(np.array(f3.column(0)[0].as_py(), np.float32), z["W_dec"][3])
    assert f3.column(1)[0].as_py() == pytest.approx(float(z["threshold"][3]))


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu"])
def test_dictionary_learning_roundtrip(saew, home, tmp_path, arch):
    p = make_sae(12, 20, arch, seed=6, k=3 if arch == "topk" else None)
    folder = write_dictionary_learning(tmp_path / "dl", p, layer=3)
    code, _, err = saew("ingest", "sae", folder, "--release", "d")
    assert code == 0, err
    lake = Lake(home)
    _same(load_sae(lake, "d", 3), p)
    row = _row(lake, "d", 3)
    assert row["architecture"] == arch and row["k"] == p.k
    assert row["model"] == "EleutherAI/pythia-70m-deduped" and row["source_format"] == "dictionary_learning"


def test_layer_option_hook_option_and_reingest_replaces(saew, home, tmp_path):
    p = make_sae(8, 16, "relu", seed=7)
    f = write_openai(tmp_path / "ckpt" / "sae.pt", p)  # no layer in the name
    code, _, err = saew("ingest", "sae", f, "--release", "r")
    assert code == 2 and "--layer" in err and str(f) in err
    assert saew("ingest", "sae", f, "--release", "r", "--hook", "blocks.9.hook_mlp_out")[0] == 0
    assert _row(Lake(home), "r", 9)["hook"] == "blocks.9.hook_mlp_out"
    assert saew("ingest", "sae", f, "--release", "r", "--layer", "9")[0] == 0
    lake = Lake(home)
    n = lake.query("SELECT count(*) AS n FROM features WHERE release='r'").column("n")[0].as_py()
    assert n == 16 and lake.query("SELECT count(*) AS n FROM saes").column("n")[0].as_py() == 1
    assert lake.query("SELECT count(*) AS n FROM runs").column("n")[0].as_py() == 2


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written
def _bad(saew, home, *args, expect: str) -> str:
    code, out, err = saew("ingest", "sae", *args)
    assert code == 2, (out, err)
    assert err.startswith("saew: error: ") and err.count("\n") == 1, err
    assert expect in err, err
    _nothing_written(home)
    return err


def test_bad_truncated_safetensors(saew, home, tmp_path):
    folder = write_saelens(tmp_path / "s", make_sae(8, 16), hook="blocks.1.hook_resid_post")
    w = folder / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:-40])
    _bad(saew, home, folder, "--release", "r", expect="truncated")
    w.write_bytes(b"\x05")
    _bad(saew, home, folder, "--release", "r", expect="sae_weights.safetensors")
    w.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    _bad(saew, home, folder, "--release", "r", expect="corrupt")


def test_bad_npz(saew, home, tmp_path):
    folder = write_gemmascope(tmp_path / "g", 2, make_sae(8, 16, "jumprelu"))
    f = folder / "params.npz"
    f.write_bytes(f.read_bytes()[:200])
    _bad(saew, home, folder, "--release", "r", expect="params.npz: not a readable .npz")


def test_bad_pt_truncated(saew, home, tmp_path):
    f = write_openai(tmp_path / "3.pt", make_sae(8, 16, "topk", k=2))
    f.write_bytes(f.read_bytes()[:300])
    _bad(saew, home, f, "--release", "r", expect="3.pt: not a readable torch checkpoint")


def test_bad_pickle_that_runs_code(saew, home, tmp_path):
    marker = tmp_path / "pwned"
    f = write_evil_pt(tmp_path / "3.pt", marker, make_sae(8, 16, "topk", k=2))
    _bad(saew, home, f, "--release", "r", expect="would run code")
    assert not marker.exists()


def test_bad_shape_vs_config(saew, home, tmp_path):
    folder = write_saelens(tmp_path / "s", make_sae(8, 16), hook="blocks.1.hook_resid_post",
                           cfg_extra={"d_sae": 17})
    _bad(saew, home, folder, "--release", "r", expect="W_enc has shape (8, 16), expected (8, 17)")
    dl = write_dictionary_learning(tmp_path / "dl", make_sae(8, 16), layer=1)
    cfg = json.loads((dl / "config.json").read_text())
    cfg["trainer"]["activation_dim"] = 9
    (dl / "config.json").write_text(json.dumps(cfg))
    _bad(saew, home, dl, "--release", "r", expect="encoder.weight has shape (16, 8), expected (16, 9)")


def test_bad_shape_inside_file(saew, home, tmp_path):
    import torch
    p = make_sae(8, 16, "topk", k=2)
    f = write_openai(tmp_path / "1.pt", p)
    sd = torch.load(f, weights_only=True)
    sd["latent_bias"] = torch.zeros(15)
    torch.save(sd, f)
    _bad(saew, home, f, "--release", "r", expect="latent_bias has shape (15,), expected (16,)")


def test_bad_d_in_within_release(saew, home, tmp_path):
    a = write_saelens(tmp_path / "a", make_sae(8, 16), hook="blocks.0.hook_resid_post")
    b = write_saelens(tmp_path / "b", make_sae(10, 16), hook="blocks.1.hook_resid_post")
    _bad(saew, home, a, b, "--release", "r", expect="d_in 10 differs")
    assert saew("ingest", "sae", a, "--release", "r")[0] == 0
    code, _, err = saew("ingest", "sae", b, "--release", "r")
    assert code == 2 and "d_in 10 differs" in err
    assert Lake(home).query("SELECT count(*) AS n FROM saes").column("n")[0].as_py() == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_nan_inf(saew, home, tmp_path, bad):
    p = make_sae(8, 16)
    p.w_dec[3, 2] = bad
    folder = write_saelens(tmp_path / "s", p, hook="blocks.1.hook_resid_post")
    _bad(saew, home, folder, "--release", "r", expect="NaN or Inf")


def test_bad_missing_path_and_release_name(saew, home, tmp_path):
    _bad(saew, home, tmp_path / "nope", "--release", "r", expect="nope: no such file or directory")
    folder = write_saelens(tmp_path / "s", make_sae(8, 16), hook="blocks.1.hook_resid_post")
    _bad(saew, home, folder, "--release", "../evil", expect="--release '../evil'")
    _bad(saew, home, folder, "--release", "a/b", expect="release names must match")


def test_bad_one_of_several_paths_writes_nothing(saew, home, tmp_path):
    good = write_saelens(tmp_path / "a", make_sae(8, 16), hook="blocks.0.hook_resid_post")
    bad = write_saelens(tmp_path / "b", make_sae(8, 16), hook="blocks.1.hook_resid_post")
    (bad / "cfg.json").write_text("{oops")
    _bad(saew, home, good, bad, "--release", "r", expect="cfg.json: not valid JSON")
    _bad(saew, home, good, good, "--release", "r", expect="layer 0 is also given by")


def test_bad_unknown_format_and_unsupported_arch(saew, home, tmp_path):
    (tmp_path / "empty").mkdir()
    _bad(saew, home, tmp_path / "empty", "--release", "r", expect="cannot tell the SAE format")
    folder = write_saelens(tmp_path / "s", make_sae(8, 16), hook="blocks.1.hook_resid_post",
                           cfg_extra={"architecture": "matching_pursuit"})
    _bad(saew, home, folder, "--release", "r", expect="unsupported SAELens architecture")
    z = tmp_path / "x.npz"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("junk.txt", "hello")
    _bad(saew, home, z, "--release", "r", expect="x.npz")
