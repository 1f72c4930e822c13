"""``saew ingest sae``: EleutherAI sparsify folders, layers from download file names, and whole
snapshot folders (SAELens, Gemma Scope, sparsify, OpenAI v5) in one command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from saew.storage.lake import Lake
from saew.storage.saes import load_sae
from tests.factories import make_sae
from tests.factories_harvest import np_encode
from tests.formats import write_gemmascope, write_openai, write_saelens, write_sparsify


def _layers(home) -> list[dict]:
    return Lake(home).query("SELECT layer, source_format, architecture, k, hook FROM saes ORDER BY layer").to_pylist()


def _nothing_written(home) -> None:
    lake = Lake(home)
    assert not lake.has_data("saes") and not lake.has_data("features") and not lake.has_data("runs")


def _bad(saew, home, *args, expect: str) -> None:
    code, out, err = saew("ingest", "sae", *args)
    assert code == 2, (out, err)
    assert expect in err and len(err.strip().splitlines()) == 1, err
    _nothing_written(home)


@pytest.mark.parametrize("fmt", ["auto", "sparsify"])
def test_sparsify_roundtrip_and_encoding(saew, home, tmp_path, fmt):
    p = make_sae(12, 24, "topk", seed=2, k=4)
    folder = write_sparsify(tmp_path / "snap" / "layers.3", p)
    code, out, err = saew("ingest", "sae", folder, "--release", "s", "--format", fmt)
    assert code == 0, err
    lake = Lake(home)
    q = load_sae(lake, "s", 3)
    np.testing.assert_array_equal(q.w_enc, p.w_enc)
    np.testing.assert_array_equal(q.w_dec, p.w_dec)
    np.testing.assert_array_equal(q.b_enc, p.b_enc)
    np.testing.assert_array_equal(q.b_dec, p.b_dec)
    assert _layers(home) == [{"layer": 3, "source_format": "sparsify", "architecture": "topk", "k": 4,
                              "hook": "blocks.3.hook_resid_post"}]
    row = lake.query("SELECT normalize, apply_b_dec_to_input FROM saes").to_pylist()[0]
    assert row == {"normalize": "none", "apply_b_dec_to_input": True}
    # sparsify's own encoding, from the file's tensors: top-k of relu((x - b_dec) W^T + b)
    from safetensors.numpy import load_file
    t = load_file(str(folder / "sae.safetensors"))
    x = np.random.default_rng(0).normal(size=(30, 12))
    pre = np.maximum((x - t["b_dec"]) @ t["encoder.weight"].T.astype(np.float64) + t["encoder.bias"], 0)
    want = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=1)[:, :4]
    np.put_along_axis(want, idx, np.take_along_axis(pre, idx, 1), 1)
    np.testing.assert_allclose(np_encode(x, q), want, rtol=1e-5, atol=1e-6)


def test_sparsify_expansion_factor_mlp_hookpoint_and_bf16(saew, home, tmp_path):
    p = make_sae(8, 16, "topk", seed=3, k=2)
    folder = write_sparsify(tmp_path / "layers.4.mlp", p, num_latents=False, dtype="bfloat16")
    code, _, err = saew("ingest", "sae", folder / "cfg.json", "--release", "s")
    assert code == 0, err
    assert _layers(home)[0]["hook"] == "blocks.4.hook_mlp_out"
    assert load_sae(Lake(home), "s", 4).d_sae == 16


def test_v5_file_names_give_the_layer(saew, home, tmp_path):
    p = make_sae(12, 20, "topk", seed=4, k=3)
    f = write_openai(tmp_path / "v5_32k_layer_5.pt", p)
    code, _, err = saew("ingest", "sae", f, "--release", "v5")
    assert code == 0, err
    assert [r["layer"] for r in _layers(home)] == [5]


def test_snapshot_folders_ingest_every_sae(saew, home, tmp_path):
    snaps = {
        "v5": lambda d: [write_openai(d / f"v5_32k_layer_{L}.pt", make_sae(12, 20, "topk", seed=L, k=3))
                         for L in range(3)],
        "sparsify": lambda d: [write_sparsify(d / f"layers.{L}", make_sae(12, 24, "topk", seed=L, k=4))
                               for L in (0, 2, 10)],
        "saelens": lambda d: [write_saelens(d / f"blocks.{L}.hook_resid_post", make_sae(12, 16, seed=L),
                                            hook=f"blocks.{L}.hook_resid_post") for L in (1, 4)],
    }
    want = {"v5": ([0, 1, 2], "openai"), "sparsify": ([0, 2, 10], "sparsify"), "saelens": ([1, 4], "saelens")}
    for name, make in snaps.items():
        d = tmp_path / name
        make(d)
        (d / "README.md").write_text("downloaded")
        code, out, err = saew("ingest", "sae", d, "--release", name)
        assert code == 0, err
        rows = Lake(home).query("SELECT layer, source_format FROM saes WHERE release = ? ORDER BY layer",
                                [name]).to_pylist()
        layers, fmt = want[name]
        assert [r["layer"] for r in rows] == layers and {r["source_format"] for r in rows} == {fmt}
        assert f"ingested {len(layers)} SAE(s)" in out


def _gemma_snapshot(root):
    for layer, width, l0 in [(0, "width_16k", "average_l0_22"), (0, "width_16k", "average_l0_71"),
                             (0, "width_65k", "average_l0_71"), (1, "width_16k", "average_l0_71"),
                             (1, "width_65k", "average_l0_40")]:
        write_gemmascope(root, layer, make_sae(12, 20, "jumprelu", seed=layer), width=width, l0=l0)
    return root


def test_gemmascope_snapshot_width_and_l0_choose(saew, home, tmp_path):
    root = _gemma_snapshot(tmp_path / "gemma-scope-2b-pt-res")
    _bad(saew, home, root, "--release", "g", expect="layer 0 has 3 SAEs")
    _bad(saew, home, root, "--release", "g", "--width", "16k", expect="layer 0 has 2 SAEs")
    _bad(saew, home, root, "--release", "g", "--width", "99k", expect="widths: 16k, 65k")
    code, out, err = saew("ingest", "sae", root, "--release", "g", "--width", "width_16k", "--average-l0", "71")
    assert code == 0, err
    rows = Lake(home).query("SELECT layer, source_path FROM saes ORDER BY layer").to_pylist()
    assert [r["layer"] for r in rows] == [0, 1]
    assert all("width_16k/average_l0_71" in r["source_path"] for r in rows)
    code, _, err = saew("ingest", "sae", root, "--release", "g65", "--width", "65k")
    assert code == 0, err
    assert Lake(home).query("SELECT count(*) AS n FROM saes WHERE release = 'g65'").column("n")[0].as_py() == 2


def test_bad_sparsify_inputs(saew, home, tmp_path):
    p = make_sae(8, 16, "topk", seed=1, k=2)
    f = write_sparsify(tmp_path / "a" / "layers.1", p, cfg_extra={"num_latents": 32})
    _bad(saew, home, f, "--release", "r", expect="encoder.weight has shape (16, 8), expected (32, 8)")
    f = write_sparsify(tmp_path / "b" / "layers.1", p, cfg_extra={"transcode": True})
    _bad(saew, home, f, "--release", "r", expect="transcode is set")
    f = write_sparsify(tmp_path / "c" / "layers.1", p, cfg_extra={"activation": "groupmax"})
    _bad(saew, home, f, "--release", "r", expect="unsupported sparsify activation 'groupmax'")
    f = write_sparsify(tmp_path / "d" / "layers.1", p, cfg_extra={"k": None})
    _bad(saew, home, f, "--release", "r", expect="positive k")
    f = write_sparsify(tmp_path / "e" / "hook", p)
    _bad(saew, home, f, "--release", "r", expect="cannot tell the layer")
    f = write_sparsify(tmp_path / "f" / "layers.1", p)
    (f / "cfg.json").write_text(json.dumps({**json.loads((f / "cfg.json").read_text()), "d_in": 9}))
    _bad(saew, home, f, "--release", "r", expect="expected (16, 9)")
    (f / "sae.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    _bad(saew, home, f, "--release", "r", expect="sae.safetensors")


def test_bad_snapshot_layer_option_and_duplicate_layers(saew, home, tmp_path):
    d = tmp_path / "snap"
    for L in range(2):
        write_sparsify(d / f"layers.{L}", make_sae(8, 16, "topk", seed=L, k=2))
    _bad(saew, home, d, "--release", "r", "--layer", "3", expect="holds 2")
    write_openai(d / "v5_32k_layer_1.pt", make_sae(8, 16, "topk", seed=9, k=2))
    _bad(saew, home, d, "--release", "r", expect="layer 1 is also given by")
    _bad(saew, home, tmp_path / "snap" / "layers.0", "--release", "r", "--format", "openai",
         expect="no openai SAE")
