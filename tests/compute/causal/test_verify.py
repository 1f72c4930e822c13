"""``saew verify`` on a tiny minilm warehouse filled by the commands themselves: module SAEs
trained with ``train --hooks resid_post,mlp_out,attn_out --harvest`` (200 tokens), folded and
random matches, ``saew flow``; then every link family verified, and the bad inputs refused."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from saew.storage.lake import Lake
from tests.factories import make_sae, put_sae, run_saew

R = "t"
LINKS = {"match/decoder/folded", "match/decoder/random", "flow/resid", "flow/mlp_out", "flow/attn_out"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    home = tmp_path_factory.mktemp("verify") / "home"
    for argv in (
        ["train", "--release", R, "--model", "minilm", "--layers", "0-1", "--tokens", "200",
         "--hooks", "resid_post,mlp_out,attn_out", "--d-sae", "64", "--k", "8", "--steps", "6",
         "--batch-size", "128", "--workers", "1", "--harvest", "--examples", "0"],
        ["match", "--release", R, "--method", "folded"],
        ["match", "--release", R, "--method", "random", "--draws", "1"],
        ["flow", "--release", R],
    ):
        code, out, err = run_saew(home, *argv)
        assert code == 0, (argv, out, err)
    put_sae(Lake(home), "plain", 0, make_sae(384, 16, seed=1, model="minilm"))
    return home


@pytest.fixture
def home(base, tmp_path):
    h = tmp_path / "home"
    shutil.copytree(base, h)
    return h


def _rows(home, sql="SELECT * FROM interventions ORDER BY ALL"):
    return Lake(home).query(sql).to_pylist()


def test_every_link_family_verified_and_rerun_replaces_only_its_link(home):
    code, out, err = run_saew(home, "verify", "--release", R, "--sample", "4", "--tokens-per-link", "2")
    assert code == 0, out + err
    assert "verified" in out
    rows = _rows(home)
    assert {r["link"] for r in rows} == LINKS
    for link in LINKS:
        got = [r for r in rows if r["link"] == link]
        assert len(got) == 4, link                       # one layer pair 0 -> 1, sample 4
        assert all(r["dst_layer"] == 1 and r["dst_release"] == R for r in got)
        assert all(1 <= r["n_tokens"] <= 2 and np.isfinite(r["act_before"]) for r in got)
    src = {r["link"]: r["src_release"] for r in rows}
    assert src["flow/mlp_out"] == f"{R}.mlp_out" and src["flow/attn_out"] == f"{R}.attn_out"
    assert {r["src_layer"] for r in rows if r["link"] == "flow/mlp_out"} == {1}
    # the match links of a pair share their sources (a paired comparison of methods)
    by = lambda link: sorted(r["src_feature"] for r in rows if r["link"] == link)  # noqa: E731
    assert by("match/decoder/folded") == by("match/decoder/random")
    # the folded match of a source is its matches row
    m = {(r["src_feature"]): r["dst_feature"] for r in Lake(home).query(
        "SELECT src_feature, dst_feature FROM matches WHERE method = 'folded'").to_pylist()}
    assert all(m[r["src_feature"]] == r["dst_feature"] for r in rows if r["link"] == "match/decoder/folded")
    # a re-run of one link (another seed) replaces that link's rows and keeps the others
    code, out, err = run_saew(home, "verify", "--release", R, "--link", "match/decoder/folded",
                              "--sample", "3", "--seed", "1")
    assert code == 0, out + err
    again = _rows(home)
    assert len([r for r in again if r["link"] == "match/decoder/folded"]) == 3
    keep = lambda rs: [r for r in rs if r["link"] != "match/decoder/folded"]  # noqa: E731
    assert keep(again) == keep(rows)
    # the same seed draws the same sample and measures the same target values (the controls
    # may differ: they are drawn per batch, and the first run batched the flow/resid sources too)
    code, out, err = run_saew(home, "verify", "--release", R, "--link", "match/decoder/folded,match/decoder/random",
                              "--sample", "4", "--tokens-per-link", "2")
    assert code == 0, out + err
    pick = lambda rs: sorted((r["link"], r["src_feature"], r["dst_feature"], r["n_tokens"], r["act_before"],  # noqa: E731
                              r["act_after"]) for r in rs if r["link"].startswith("match/"))
    for a, b in zip(pick(_rows(home)), pick(rows), strict=True):
        assert a[:4] == b[:4] and a[4:] == pytest.approx(b[4:], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--release", "plain", "--link", "flow"], "no module SAEs (plain.mlp_out, plain.attn_out)"),
    (["--release", R, "--link", "match/decoder/nosuch"], "has no such matches"),
    (["--release", R, "--link", "bogus"], "--link 'bogus'"),
    (["--release", R, "--link", "flow/ffn"], "flow modules are"),
    (["--release", R, "--sample", "100000"], "--sample 100000: match links t layer 0 -> t layer 1 has only"),
    (["--release", R, "--sample", "0"], "--sample 0: must be at least 1"),
    (["--release", R, "--layers", "5-7"], "--layers 5-7: no layer pair"),
    (["--release", R, "--layers", "1,x"], "--layers '1,x': expected L, A-B"),
])
def test_bad_inputs_one_line_exit_2_nothing_written(home, argv, message):
    code, out, err = run_saew(home, "verify", *argv)
    assert code == 2, out + err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not Lake(home).has_data("interventions")
    assert not Lake(home).query("SELECT * FROM runs WHERE command = 'verify'").num_rows


def test_minilm_residual_edit_read_at_the_next_block_input(base):
    """On the real model: blocks.0.hook_resid_post and blocks.1.hook_resid_pre are the same
    tensor, so with one relu SAE at both, switching feature s off gives exactly
    relu(pre_j - a_s <w_dec[s], w_enc[:, j]>) for every feature j at the last token."""
    from saew.compute.causal.intervene import Point, intervene, make_windows
    from saew.compute.lm.load import load_model
    from saew.sae.encode import TorchSAE

    model = load_model("minilm")
    p = make_sae(384, 32, "relu", seed=7)
    sae = TorchSAE.from_params(p)
    seqs = [model.tokenizer("the fox jumps over the dog", add_special_tokens=False)["input_ids"],
            model.tokenizer("sparse features", add_special_tokens=False)["input_ids"]]
    pres = []
    for seq in seqs:   # the oracle: Hugging Face hidden_states[1] (block 0's output), each alone
        ids = torch.tensor([model.prefix + seq + model.suffix])
        with torch.no_grad():
            h = model.module(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
        pres.append((h[len(model.prefix) + len(seq) - 1] - sae.b_dec) @ sae.w_enc + sae.b_enc)
    s = torch.stack([p_.argmax() for p_ in pres])                  # the strongest feature, active
    win = make_windows(seqs, model.prefix, model.suffix, model.pad_id)
    clean, ablated = intervene(model, win, Point(0, "resid_post"), sae, s, Point(1, "resid_pre"), sae)
    w = torch.from_numpy(p.w_dec) @ torch.from_numpy(p.w_enc)      # [d_sae, d_sae]: <w_dec[s], w_enc[:, j]>
    for r, pre in enumerate(pres):
        a = pre.clamp_min(0)[s[r]]
        assert a > 0
        torch.testing.assert_close(clean[r], pre.clamp_min(0), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ablated[r], (pre - a * w[s[r]]).clamp_min(0), rtol=1e-4, atol=1e-4)
        assert ablated[r, s[r]] < clean[r, s[r]]
