"""Training one SAE on raw residuals: input scaling, the optimisation loop, dead-feature resampling.

Input scaling: each layer trains on s * x with s = sqrt(d_in / median_i ||x_i - c||^2), c the
coordinate-wise median (robust to SmolLM2's "massive activation" tokens), and each token's
squared error is weighted by w_i = min(1, outlier_clip * d_in / ||s (x_i - c)||^2) so those few
huge tokens cannot take all the features. s is folded back so that the written SAE (normalize
'none') maps RAW residuals exactly like training did, with the decoder still unit-norm:
W_enc = W_enc', b_enc = b_enc' / s, threshold = theta' / s, b_dec = b_dec' / s, W_dec = W_dec'
(so f = f' / s and x_hat = x_hat' / s). The reported mse / fvu are the plain, unweighted ones.

Dead features: a feature that fired on none of the last ``dead_tokens`` training tokens is
dead; at the ``resample_at`` fractions of training dead features are re-initialised toward
badly reconstructed inputs (their decoder row is the unit residual x - x_hat of a token drawn
with probability proportional to its squared error; "Towards Monosemanticity"), and TopK
trains them meanwhile through AuxK.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from saew.compute.training.config import TrainConfig
from saew.compute.training.metrics import evaluate
from saew.compute.training.model import TrainingSAE, dense_step, jumprelu_fns, to_params, topk_step
from saew.sae.metrics import fvu, mean_l0, mse
from saew.sae.params import SAEParams


@dataclass
class TrainResult:
    params: SAEParams
    log: list[dict] = field(default_factory=list)   # one dict per logged step
    final: dict = field(default_factory=dict)       # mse, fvu, l0, dead_frac on all tokens
    scale: float = 1.0
    seconds: float = 0.0
    codes: tuple | None = None                      # (token_id, feature, value) with token_ids


def input_scale(x) -> tuple[float, "torch.Tensor"]:
    """(s, c): the centre c = coordinate-wise median of x and s = sqrt(d_in / median_i ||x_i - c||^2).

    Medians, not means, so that a few "massive activation" tokens (norms 50x the others, as in
    SmolLM2's middle layers) set neither the centre nor the scale: s * x has a median squared
    centred norm of d_in.
    """
    c = x.median(0).values
    sq = (x - c).pow(2).sum(1)
    med = sq.median().item()
    return (math.sqrt(x.shape[1] / med) if med > 0 else 1.0), c


def token_weights(sq_norm, d_in: int, clip: float):
    """w_i = min(1, clip * d_in / ||s x_i - s c||^2): per-token weight of the squared error.

    Tokens up to ``clip`` times the median squared norm count fully; larger outliers count as
    their relative error times ``clip * d_in``, so they cannot monopolise the features.
    """
    return (clip * d_in / sq_norm.clamp_min(1e-12)).clamp(max=1.0)


def _lr_factor(t: int, steps: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * steps))
    if t <= warm:
        return t / warm
    decay = int(cfg.decay_frac * steps)
    if decay and t > steps - decay:
        return max(0.0, (steps - t + 1) / (decay + 1))
    return 1.0


def _resample(s: TrainingSAE, opt, dead, xs, w_tok, cfg: TrainConfig, gen, forward) -> None:
    """Re-initialise dead features toward badly reconstructed inputs ("Towards Monosemanticity").

    Tokens are drawn with probability proportional to their (weighted) squared error; the dead
    feature's decoder row becomes the unit residual direction of its token, its encoder row
    that direction times the mean encoder-row norm of the live features (x 0.2 except for
    TopK), its b_enc 0 (theta the initial threshold), and its Adam moments are reset.
    """
    import torch

    ids = dead.nonzero().squeeze(1)
    if ids.numel() == 0:
        return
    ids_s = torch.randint(0, xs.shape[0], (min(xs.shape[0], 8192),), generator=gen)
    sample = xs[ids_s]
    with torch.no_grad():
        r = sample - forward(sample)
        w = w_tok[ids_s] * r.pow(2).sum(1)
        if not w.sum() > 0:
            return
        pick = torch.multinomial(w, ids.numel(), replacement=ids.numel() > w.numel(), generator=gen)
        direction = r[pick] / r[pick].norm(dim=1, keepdim=True).clamp_min(1e-8)
        live = ~dead
        enc_norm = s.w_enc[live].norm(dim=1).mean() if live.any() else torch.tensor(1.0)
        enc_norm = enc_norm * (1.0 if cfg.arch == "topk" else 0.2)
        s.w_dec[ids] = direction
        s.w_enc[ids] = direction * enc_norm
        s.b_enc[ids] = 0.0
        if s.log_thr is not None:
            s.log_thr[ids] = math.log(cfg.init_threshold)
        for t in s.tensors():
            st = opt.state.get(t)
            if st and t.shape[0] == cfg.d_sae:
                st["exp_avg"][ids] = 0
                st["exp_avg_sq"][ids] = 0


def train_sae(x, cfg: TrainConfig, *, desc: str = "train",
              token_ids: np.ndarray | None = None, device: str = "cpu") -> TrainResult:
    """Train one SAE on raw residuals ``x`` (float32 tensor [n_tokens, d_in]) on ``device``.

    Returns the folded weights (raw-space SAE, normalize 'none'), the step log and the final
    metrics on all of ``x`` (evaluated through the written weights, on the CPU); with
    ``token_ids`` (one per row of x) also the codes of x as (token_id, feature, value) arrays.
    ``device`` other than cpu: the optimisation runs with that default torch device and a
    generator of its own there (so its random draws differ from the CPU's); cpu is exactly
    the code that ran before devices existed.
    """
    import contextlib

    import torch

    t0 = time.perf_counter()
    x = x.float().contiguous()
    cfg.check()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    with contextlib.nullcontext() if device == "cpu" else torch.device(device):
        s, scale, log, seen, steps = _optimise(x.to(device), cfg, gen, desc)
    for name in ("w_enc", "b_enc", "w_dec", "b_dec", "log_thr"):   # no-ops on the CPU
        if getattr(s, name) is not None:
            setattr(s, name, getattr(s, name).detach().cpu())
    params = to_params(s, scale, cfg)
    pieces: list | None = None if token_ids is None else []
    final = evaluate(params, x, token_ids=token_ids, codes=pieces)
    log.append({"step": steps, "tokens_seen": seen, **final})
    codes = None if pieces is None else tuple(np.concatenate([q[i] for q in pieces]) for i in range(3))
    return TrainResult(params=params, log=log, final=final, scale=scale,
                       seconds=time.perf_counter() - t0, codes=codes)


def _optimise(x, cfg: TrainConfig, gen, desc: str):
    """The optimisation loop on x (on its device): (TrainingSAE, scale, log, tokens seen, steps)."""
    import torch

    from saew.progress import progress

    n, d = x.shape
    scale, centre = input_scale(x)
    xs = x * scale
    w_tok = token_weights((xs - centre * scale).pow(2).sum(1), d, cfg.outlier_clip)
    s = TrainingSAE(xs, centre * scale, cfg, gen)
    fns = jumprelu_fns() if cfg.arch == "jumprelu" else None
    groups = [{"params": [s.w_enc, s.b_enc, s.w_dec, s.b_dec], "lr": cfg.lr}]
    if s.log_thr is not None:
        groups.append({"params": [s.log_thr], "lr": cfg.threshold_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999), fused=True)
    base_lrs = [g_["lr"] for g_ in opt.param_groups]
    steps = cfg.n_steps(n)
    B = min(cfg.batch_size, n)
    window = cfg.dead_tokens or n
    resample_steps = {max(1, int(f * steps)) for f in cfg.resample_at if 0 < f < 1}
    last_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    seen = 0
    perm, pos = torch.randperm(n, generator=gen), 0
    log: list[dict] = []
    bf16 = cfg.select_bf16(str(x.device.type))

    def forward(xb):
        pre = torch.addmm(s.b_enc, xb - s.b_dec, s.w_enc.t())
        if cfg.arch == "topk":
            vals, idx = pre.topk(cfg.k, dim=-1)
            f = torch.zeros_like(pre).scatter_(-1, idx, vals.clamp_min(0))
        elif cfg.arch == "relu":
            f = pre.clamp_min(0)
        else:
            f = pre * (pre > s.log_thr.exp())
        return f @ s.w_dec + s.b_dec

    for t in progress(range(1, steps + 1), total=steps, desc=desc, unit="step"):
        if pos + B > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        bidx = perm[pos:pos + B]
        xb, wb = xs[bidx], w_tok[bidx]
        pos += B
        for g_, lr in zip(opt.param_groups, base_lrs):
            g_["lr"] = lr * _lr_factor(t, steps, cfg)
        dead = (seen - last_fired) >= window
        if cfg.arch == "topk":
            with torch.no_grad():
                sse, n_act, fired, _ = topk_step(s, xb, wb, cfg, dead, bf16)
        else:
            sse, n_act, fired, _ = dense_step(s, xb, wb, cfg, fns,
                                                 min(1.0, t / max(1.0, cfg.sparsity_warmup_frac * steps)))
        with torch.no_grad():
            # keep the decoder unit-norm: drop the gradient along each row, step, renormalise
            gw = s.w_dec.grad
            gw -= (gw * s.w_dec).sum(1, keepdim=True) * s.w_dec
            opt.step()
            s.w_dec /= s.w_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        seen += B
        last_fired[fired] = seen
        if t in resample_steps and t < steps:
            dead_now = (seen - last_fired) >= min(window, seen)
            _resample(s, opt, dead_now, xs, w_tok, cfg, gen, forward)
            last_fired[dead_now] = seen
        if t % cfg.log_every == 0 and t < steps:
            sst = (xb - xb.mean(0)).pow(2).sum().item()
            log.append({"step": t, "tokens_seen": seen, "mse": mse(sse, B, d) / scale ** 2,
                        "fvu": fvu(sse, sst), "l0": mean_l0(n_act, B),
                        "dead_frac": float(((seen - last_fired) >= min(window, seen)).float().mean())})
    return s, scale, log, seen, steps
