"""SAE training: hand-written TopK gradients, metrics, folding, SAELens folders, ``saew train``."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from saew.sae import saelens as saelens_io
from saew.sae.encode import TorchSAE
from saew.compute.training.config import TrainConfig
from saew.compute.training.metrics import evaluate
from saew.compute.training.model import TrainingSAE, to_params, topk_step
from saew.compute.training.step import parse_layers
from saew.compute.training.trainer import train_sae
from saew.sae.metrics import fvu
from saew.errors import BadInput
from saew.storage.saes import load_sae

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")


# ---------------------------------------------------------------------------- helpers
def planted(n: int = 4096, d: int = 32, atoms: int = 48, active: int = 3, seed: int = 0):
    """x = codes @ D + mean + small noise, ``active`` of ``atoms`` unit atoms per token."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(atoms, d, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:active] for _ in range(n)])
    codes = torch.zeros(n, atoms).scatter_(1, idx, 1.0 + 2.0 * torch.rand(n, active, generator=g))
    return 3.0 * (codes @ D + 0.5 + 0.01 * torch.randn(n, d, generator=g))


def random_sae(cfg: TrainConfig, d: int, seed: int = 0) -> TrainingSAE:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, d, generator=g)
    s = TrainingSAE(x, 0.3 * torch.randn(d, generator=g), cfg, g)
    with torch.no_grad():
        s.b_enc += 0.2 * torch.randn(cfg.d_sae, generator=g)
        s.w_enc.mul_(1.0 + torch.rand(cfg.d_sae, 1, generator=g))
        if s.log_thr is not None:
            s.log_thr.copy_(torch.log(0.2 + torch.rand(cfg.d_sae, generator=g)))
    return s


def reference_loss(w_enc, b_enc, w_dec, b_dec, x, w, k: int, dead, aux_k: int, coef: float,
                   choose=None):
    """Dense autograd TopK + AuxK loss, token-weighted (target and b_dec detached in AuxK).
    ``choose``: the pre-activations the features are chosen on (default: the exact ones)."""
    pre = (x - b_dec) @ w_enc.t() + b_enc
    on = pre.detach() if choose is None else choose
    i = on.topk(k, dim=-1).indices
    f = torch.zeros_like(pre).scatter(-1, i, pre.gather(-1, i).clamp_min(0))
    x_hat = f @ w_dec + b_dec
    loss = (w * (x_hat - x).pow(2).sum(1)).sum()
    if dead.any():
        pre_aux = (x - b_dec.detach()) @ w_enc.t() + b_enc
        i2 = on.masked_fill(~dead, float("-inf")).topk(aux_k, dim=-1).indices
        f2 = torch.zeros_like(pre).scatter(-1, i2, pre_aux.gather(-1, i2).clamp_min(0))
        loss = loss + coef * (w * (f2 @ w_dec - (x - x_hat).detach()).pow(2).sum(1)).sum()
    return loss / x.shape[0]


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("select_bf16", [False, True])
@pytest.mark.parametrize("with_aux", [False, True])
def test_topk_hand_gradients_equal_autograd(with_aux, select_bf16):
    """Also with the features chosen on bfloat16 pre-activations (TrainConfig.select): the
    gradients are then those of the loss with that choice, every value in float32, and the
    choice is the float32 one but for near ties."""
    cfg = TrainConfig(d_sae=48, k=5, aux_k=7, aux_coef=0.25 if with_aux else 0.0)
    s = random_sae(cfg, 16)
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1)) * 2
    dead = torch.zeros(48, dtype=torch.bool)
    dead[::3] = with_aux
    w = 0.2 + torch.rand(40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        sse, n_act, fired, x_hat = topk_step(s, x, w, cfg, dead, select_bf16)
    ref = [t.detach().clone().requires_grad_() for t in (s.w_enc, s.b_enc, s.w_dec, s.b_dec)]
    choose = None
    if select_bf16:
        choose = torch.addmm(s.b_enc.bfloat16(), (x - s.b_dec).bfloat16(), s.w_enc.bfloat16().t()).float()
        exact = torch.addmm(s.b_enc, x - s.b_dec, s.w_enc.t())
        same = (choose.topk(5, dim=-1).indices.sort(-1).values == exact.topk(5, dim=-1).indices.sort(-1).values)
        assert same.float().mean() > 0.8
    reference_loss(*ref, x, w, 5, dead, 7, 0.25, choose).backward()
    for mine, r in zip((s.w_enc, s.b_enc, s.w_dec, s.b_dec), ref):
        np.testing.assert_allclose(mine.grad.numpy(), r.grad.numpy(), rtol=1e-4, atol=1e-5)
    none = torch.zeros_like(dead)
    assert math.isclose(sse / 40, reference_loss(*ref, x, torch.ones(40), 5, none, 7, 0.0, choose).item(), rel_tol=1e-5)
    assert n_act <= 40 * 5 and fired.sum() > 0


# ---------------------------------------------------------------------------- metrics
def test_fvu_and_evaluate_against_hand_computation():
    assert fvu(2.0, 8.0) == 0.25
    # one-feature relu SAE on 1-D data: hand-computable
    from saew.sae.params import SAEParams

    p = SAEParams(w_enc=np.array([[1.0, -1.0, 0.0]], np.float32), b_enc=np.zeros(3, np.float32),
                  w_dec=np.array([[1.0], [-1.0], [1.0]], np.float32), b_dec=np.zeros(1, np.float32),
                  architecture="relu")
    x = torch.tensor([[2.0], [-1.0], [0.0], [3.0]])
    m = evaluate(p, x)
    # x_hat == x exactly (x>0 through feature 0, x<0 through feature 1); feature 2 never fires
    assert m["fvu"] == 0.0 and m["mse"] == 0.0
    assert m["l0"] == pytest.approx(3 / 4)
    assert m["dead_frac"] == pytest.approx(1 / 3)
    p2 = SAEParams(w_enc=p.w_enc, b_enc=p.b_enc, w_dec=np.array([[0.5], [-1.0], [1.0]], np.float32),
                   b_dec=p.b_dec, architecture="relu")
    m2 = evaluate(p2, x)
    sse = (1.0 ** 2 + 0 + 0 + 1.5 ** 2)
    sst = float(((x - x.mean()) ** 2).sum())
    assert m2["fvu"] == pytest.approx(sse / sst) and m2["mse"] == pytest.approx(sse / 4)


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu"])
def test_fold_reproduces_training_forward_on_raw_inputs(arch):
    cfg = TrainConfig(arch=arch, d_sae=40, k=6)
    s = random_sae(cfg, 12, seed=3)
    scale = 2.7
    x = 4 * torch.randn(50, 12, generator=torch.Generator().manual_seed(2)) + 1
    xs = x * scale
    with torch.no_grad():
        pre = (xs - s.b_dec) @ s.w_enc.t() + s.b_enc
        if arch == "topk":
            v, i = pre.topk(6, dim=-1)
            f = torch.zeros_like(pre).scatter(-1, i, v.clamp_min(0))
        elif arch == "relu":
            f = pre.clamp_min(0)
        else:
            f = pre * (pre > s.log_thr.exp())
        x_hat_scaled = f @ s.w_dec + s.b_dec
    sae = TorchSAE.from_params(to_params(s, scale, cfg))
    fr = sae.encode(x)
    torch.testing.assert_close(fr, f / scale, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sae.decode(fr), x_hat_scaled / scale, rtol=1e-4, atol=1e-4)
    assert np.allclose(np.linalg.norm(sae.w_dec.numpy(), axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------- training quality
@pytest.mark.parametrize("arch,kw,max_fvu,max_l0", [
    ("topk", {"k": 4}, 0.1, 4),
    ("relu", {"l1": 1.0}, 0.2, 20),      # L1 shrinks slowly: denser than the 3 planted atoms
    ("jumprelu", {"l0": 0.2}, 0.15, 10),
])
def test_training_recovers_planted_dictionary(arch, kw, max_fvu, max_l0):
    torch.set_num_threads(2)
    x = planted(n=2048, d=24, atoms=32)
    cfg = TrainConfig(arch=arch, d_sae=64, batch_size=256, epochs=10, lr=5e-3, log_every=10, **kw)
    r = train_sae(x, cfg)
    f = r.final
    assert f["fvu"] <= max_fvu, f
    assert f["l0"] <= max_l0, f
    assert f["dead_frac"] < 0.2, f
    steps = [row["step"] for row in r.log]
    assert steps == sorted(set(steps)) and steps[-1] == cfg.n_steps(len(x))
    assert r.log[-1] == {"step": steps[-1], "tokens_seen": steps[-1] * 256, **f}
    # the decoder stays unit-norm and the folded SAE reproduces the final metrics
    assert np.allclose(np.linalg.norm(r.params.w_dec, axis=1), 1.0, atol=1e-5)
    assert evaluate(r.params, x)["fvu"] == pytest.approx(f["fvu"])


def test_dead_features_are_resampled():
    """A TopK SAE started with half its features unreachable ends with few dead features."""
    x = planted(n=2048, d=16, atoms=24)
    cfg = TrainConfig(d_sae=64, k=3, batch_size=256, epochs=8, lr=5e-3, dead_tokens=1024)
    torch.manual_seed(0)
    r = train_sae(x, cfg)
    assert r.final["dead_frac"] < 0.1
    assert any(row["dead_frac"] >= 0 for row in r.log)


# ---------------------------------------------------------------------------- SAELens folders
@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu"])
def test_saelens_folder_round_trip(tmp_path, arch):
    from sae_lens import SAE

    cfg = TrainConfig(arch=arch, d_sae=40, k=6)
    p = to_params(random_sae(cfg, 12, seed=5), 1.7, cfg)
    from dataclasses import replace

    p = replace(p, model="m", hook="blocks.3.hook_resid_post")
    dest = saelens_io.write_folder(tmp_path / "r" / p.hook, p, metadata={"x": 1})
    saelens_io.write_folder(dest, p)  # a second write replaces the folder
    assert sorted(q.name for q in dest.parent.iterdir()) == [p.hook]
    cfg_json = json.loads((dest / saelens_io.CFG_FILE).read_text())
    assert cfg_json["metadata"]["hook_name"] == p.hook and cfg_json["d_sae"] == 40
    sae = SAE.load_from_disk(str(dest))
    for name, mine in (("W_enc", p.w_enc), ("W_dec", p.w_dec), ("b_enc", p.b_enc), ("b_dec", p.b_dec)):
        np.testing.assert_array_equal(getattr(sae, name).detach().numpy(), mine)
    if arch == "jumprelu":
        np.testing.assert_array_equal(sae.threshold.detach().numpy(), p.threshold)
    x = torch.randn(30, 12, generator=torch.Generator().manual_seed(0)) * 3
    ours = TorchSAE.from_params(p)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), ours.encode(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sae.decode(sae.encode(x)), ours.decode(ours.encode(x)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- the command
def test_parse_layers():
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("1-2", 3) == [1, 2]
    assert parse_layers("2", 3) == [2]
    for bad in ("2-1", "3", "0-3", "x", "-1", "1-", ""):
        with pytest.raises(BadInput):
            parse_layers(bad, 3)


def test_saew_train_minilm_end_to_end(saew, lake, home):
    from sae_lens import SAE

    args = ["train", "--release", "t", "--model", "minilm", "--layers", "0-1", "--tokens", "600",
            "--d-sae", "96", "--k", "8", "--steps", "6", "--batch-size", "256"]
    code, out, err = saew(*args)
    assert code == 0, err
    assert "fvu" in out
    saes = lake.query("SELECT layer, d_in, d_sae, architecture, k, hook, source_format, source_path, "
                      "source_sha256 FROM saes ORDER BY layer").to_pylist()
    assert [r["layer"] for r in saes] == [0, 1]
    for r in saes:
        assert (r["d_in"], r["d_sae"], r["architecture"], r["k"]) == (384, 96, "topk", 8)
        assert r["hook"] == f"blocks.{r['layer']}.hook_resid_post"
        folder = home / "saes" / "t" / r["hook"]
        assert r["source_path"] == str(folder) and r["source_format"] == "saelens"
        assert r["source_sha256"] == saelens_io.sha256_file(folder / saelens_io.WEIGHTS_FILE)
        sae = SAE.load_from_disk(str(folder))
        p = load_sae(lake, "t", r["layer"])
        np.testing.assert_array_equal(sae.W_enc.detach().numpy(), p.w_enc)
        np.testing.assert_array_equal(sae.W_dec.detach().numpy(), p.w_dec)
        np.testing.assert_array_equal(sae.b_enc.detach().numpy(), p.b_enc)
        np.testing.assert_array_equal(sae.b_dec.detach().numpy(), p.b_dec)
    log = lake.query("SELECT layer, step, tokens_seen, fvu, l0, dead_frac FROM training_log "
                     "ORDER BY layer, step").to_pylist()
    assert {r["layer"] for r in log} == {0, 1}
    assert [r["step"] for r in log if r["layer"] == 0][-1] == 6
    assert all(0 <= r["dead_frac"] <= 1 and r["l0"] <= 8 for r in log)
    # a re-run replaces its slices, never duplicates
    code, _, err = saew(*args)
    assert code == 0, err
    assert lake.query("SELECT count(*) AS n FROM saes").column("n")[0].as_py() == 2
    assert lake.query("SELECT count(*) AS n FROM training_log").column("n")[0].as_py() == len(log)
    assert lake.query("SELECT count(*) AS n FROM features").column("n")[0].as_py() == 2 * 96
    assert sorted(q.name for q in (home / "saes" / "t").iterdir()) == [
        "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


@pytest.mark.parametrize("extra,needle", [
    (["--layers", "3-1"], "--layers"),
    (["--layers", "6"], "--layers"),
    (["--layers", "a-b"], "--layers"),
    (["--arch", "gated"], "--arch"),
    (["--k", "100", "--d-sae", "64"], "--k"),
    (["--d-sae", "0"], "--d-sae"),
    (["--tokens", "0"], "--tokens"),
    (["--steps", "0"], "--steps"),
    (["--workers", "0"], "--workers"),
    (["--select-dtype", "fp8"], "--select-dtype"),
])
def test_saew_train_bad_inputs(saew, home, extra, needle):
    code, out, err = saew("train", "--release", "bad", "--model", "minilm", "--layers", "0",
                          "--tokens", "64", "--steps", "1", *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saew: error:") and needle in lines[0], err
    assert not (home / "lake").exists() or not any((home / "lake").rglob("*.parquet"))
    assert not (home / "saes").exists() or not any((home / "saes").rglob("*.safetensors"))


def test_input_scale_and_token_weights_by_hand():
    from saew.compute.training.trainer import input_scale, token_weights

    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0], [2.0, -2.0], [100.0, 0.0]])
    s, c = input_scale(x)
    # coordinate-wise median (2, 0); squared norms 1, 1, 4, 4, 9604 -> median 4 -> s = sqrt(2/4)
    assert c.tolist() == [2.0, 0.0] and s == pytest.approx(math.sqrt(2 / 4))
    w = token_weights(torch.tensor([1.0, 8.0, 16.0, 80.0]), 2, 4.0)
    assert w.tolist() == pytest.approx([1.0, 1.0, 0.5, 0.1])


def test_saew_train_refuses_a_release_of_another_width(saew, lake, home):
    from tests.factories import make_sae, put_sae

    put_sae(lake, "w", 5, make_sae(d_in=16, d_sae=32))
    code, _, err = saew("train", "--release", "w", "--model", "minilm", "--layers", "0",
                        "--tokens", "64", "--steps", "1")
    assert code == 2 and "d_in 16" in err and len(err.strip().splitlines()) == 1
    assert lake.query("SELECT layer FROM saes").column("layer").to_pylist() == [5]
    assert not lake.has_data("training_log")
    assert not (home / "saes").exists()


def test_saew_train_harvest_equals_a_separate_harvest(saew, lake, home):
    """``train --harvest`` records the training pass exactly as a later ``saew harvest`` would."""
    code, out, err = saew("train", "--release", "h", "--model", "minilm", "--layers", "0-1",
                          "--tokens", "500", "--d-sae", "64", "--k", "8", "--steps", "4",
                          "--batch-size", "128", "--harvest")
    assert code == 0, err
    assert "harvested the same 500 tokens" in out

    def snapshot():
        acts = lake.query("SELECT layer, token_id, feature, value FROM activations "
                          "ORDER BY layer, token_id, feature").to_pydict()
        toks = lake.query("SELECT token_id, doc, pos, token FROM tokens ORDER BY token_id").to_pydict()
        sets = lake.query("SELECT layer, n_tokens FROM activation_sets ORDER BY layer").to_pylist()
        return acts, toks, sets

    a1, t1, s1 = snapshot()
    assert s1 == [{"layer": 0, "n_tokens": 500}, {"layer": 1, "n_tokens": 500}]
    assert 0 < len(a1["value"]) <= 2 * 500 * 8 and min(a1["value"]) > 0
    code, _, err = saew("harvest", "--release", "h", "--model", "minilm", "--corpus", "builtin",
                        "--tokens", "500")
    assert code == 0, err
    a2, t2, s2 = snapshot()
    assert t1 == t2 and s1 == s2
    for key in ("layer", "token_id", "feature"):
        assert a1[key] == a2[key]
    np.testing.assert_allclose(a1["value"], a2["value"], rtol=1e-4, atol=1e-5)


def test_saew_train_harvest_refuses_untrained_layers(saew, home):
    args = ["train", "--release", "p", "--model", "minilm", "--tokens", "200", "--d-sae", "32",
            "--k", "4", "--steps", "1", "--batch-size", "64"]
    code, _, err = saew(*args, "--layers", "2")
    assert code == 0, err
    code, _, err = saew(*args, "--layers", "0", "--harvest")
    assert code == 2 and "--harvest" in err and "2" in err, err


@pytest.mark.parametrize("harvest", [False, True])
def test_a_failed_train_keeps_its_finished_saes_and_the_rerun_trains_the_rest(saew, lake, home, monkeypatch,
                                                                               tmp_path, harvest):
    """Each (layer, module) SAE is a unit: a failure at the third keeps the first two (folders,
    saes, training_log), the re-run trains only the missing two (the model pass captures only
    their layer, or every layer with --harvest), and the lake ends as after one uninterrupted run."""
    import saew.compute.lm.model as lm
    import saew.compute.training.step as step
    from saew.storage.lake import Lake

    args = ["train", "--release", "u", "--model", "minilm", "--layers", "0-1", "--hooks",
            "resid_post,mlp_out", "--tokens", "300", "--d-sae", "32", "--k", "4", "--steps", "3",
            "--batch-size", "64", "--workers", "1", *(["--harvest", "--examples", "2"] if harvest else [])]
    real, calls = step._train_job, []

    def failing(layer, x, cfg, model, hook, *rest):
        calls.append(hook)
        if len(calls) == 3:
            raise RuntimeError("killed at the third SAE")
        return real(layer, x, cfg, model, hook, *rest)

    monkeypatch.setattr(step, "_train_job", failing)
    with pytest.raises(RuntimeError, match="killed at the third SAE"):
        saew(*args)
    kept = lake.query("SELECT release, layer FROM saes ORDER BY 1, 2").to_pylist()
    assert kept == [{"release": "u", "layer": 0}, {"release": "u.mlp_out", "layer": 0}]
    assert lake.query("SELECT status, units FROM runs WHERE command = 'train'").to_pylist() == [
        {"status": "partial", "units": ["layer=0", "layer=0/mlp_out"]}]
    assert sorted(p.name for p in (home / "saes" / "u").iterdir()) == ["blocks.0.hook_resid_post"]
    assert not lake.has_data("activations")

    calls.clear()
    captured: list[list[int]] = []
    real_hooks = lm.hook_outputs
    monkeypatch.setattr(lm, "hook_outputs", lambda m, d, n, layers, *a, **k: (captured.append(list(layers)),
                                                                              real_hooks(m, d, n, layers, *a, **k))[1])
    monkeypatch.setattr(step, "_train_job", lambda *a: (calls.append(a[4]), real(*a))[1])
    code, out, err = saew(*args)
    assert code == 0, err
    assert calls == ["blocks.1.hook_resid_post", "blocks.1.hook_mlp_out"] and "kept 2 unit(s)" in out
    assert captured == [[0, 1] if harvest else [1]]

    other = Lake(tmp_path / "other")
    assert saew(*args, home_dir=tmp_path / "other")[0] == 0

    def rows(lk):
        out = {t: lk.query(f"SELECT * FROM {t} ORDER BY ALL").to_pylist()
               for t in ("features", "training_log")}
        out["saes"] = lk.query("SELECT release, layer, d_in, d_sae, hook, source_sha256 FROM saes "
                               "ORDER BY ALL").to_pylist()
        if harvest:
            out["activations"] = lk.query("SELECT release, layer, token_id, feature, value FROM activations "
                                          "ORDER BY ALL").to_pylist()
            out["activation_sets"] = lk.query("SELECT release, layer, n_tokens FROM activation_sets "
                                              "ORDER BY ALL").to_pylist()
        return out

    a, b = rows(lake), rows(other)
    for t in a:
        assert len(a[t]) > 0 and a[t] == b[t], t
