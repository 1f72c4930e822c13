"""``saew train``: one sparse autoencoder per layer, trained on residuals harvested in one pass.

Architectures (all with a unit-norm decoder, Adam, and ``apply_b_dec_to_input``):

* ``topk`` (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"):
  f = ReLU(TopK_k(pre)), loss = ||x - x_hat||^2 + aux_coef * ||e - e_hat||^2 (AuxK: the
  residual e = x - x_hat reconstructed by the aux_k largest pre-activations of dead features).
  Its gradients are computed by hand, sparsely (only the k selected features of each token),
  which makes a step about as cheap as the one dense encoder product.
* ``relu`` (Anthropic, "Towards Monosemanticity" / April 2024 update):
  f = ReLU(pre), loss = ||x - x_hat||^2 + l1 * sum_i f_i ||W_dec_i|| (= sum_i f_i: unit rows).
* ``jumprelu`` (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity
  with JumpReLU Sparse Autoencoders"): f = pre * H(pre - theta), theta = exp(log_theta),
  loss = ||x - x_hat||^2 + l0 * sum_i H(pre_i - theta_i); the threshold learns through the
  straight-through rectangle-kernel pseudo-derivatives
  d/dtheta JumpReLU = -(theta / eps) K((pre - theta) / eps), d/dtheta H = -(1 / eps) K(...),
  K(u) = 1[|u| < 1/2], eps the bandwidth.

Here pre = (x - b_dec) @ W_enc + b_enc and x_hat = f @ W_dec + b_dec.

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
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams

ARCHS = ("topk", "relu", "jumprelu")
EXPANSION = 4          # default d_sae = EXPANSION * d_model
DEFAULT_TOKENS = 32768


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    arch: str = "topk"
    d_sae: int = 1536
    k: int = 32                      # topk
    l1: float = 2.0                  # relu: L1 coefficient (inputs scaled to E||x - mu||^2 = d_in)
    l0: float = 1.0                  # jumprelu: L0 coefficient
    lr: float = 4e-3
    threshold_lr: float = 2e-2       # jumprelu: Adam lr of log_theta
    batch_size: int = 1024
    epochs: float = 5.0
    steps: int | None = None         # overrides epochs
    bandwidth: float = 0.05          # jumprelu STE bandwidth eps (in scaled units)
    init_threshold: float = 0.5      # jumprelu theta at start (scaled units)
    aux_k: int | None = None         # topk AuxK: default d_in // 2
    aux_coef: float = 1 / 32
    dead_tokens: int | None = None   # dead after this many tokens without firing (default: one epoch)
    resample_at: tuple[float, ...] = (0.3, 0.6)
    sparsity_warmup_frac: float = 0.5  # relu/jumprelu: l1 / l0 ramp linearly from 0 over this fraction
    outlier_clip: float = 4.0        # tokens above 4x the median squared norm: relative error
    warmup_frac: float = 0.05
    decay_frac: float = 0.3          # linear decay of lr to 0 over the last fraction of steps
    log_every: int = 5
    seed: int = 0

    def n_steps(self, n_tokens: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(self.epochs * n_tokens / min(self.batch_size, n_tokens)))

    def check(self, d_in: int | None = None) -> "TrainConfig":
        """BadInput on a configuration that cannot train."""
        if self.arch not in ARCHS:
            raise BadInput(f"--arch {self.arch!r}: unknown architecture (expected one of {', '.join(ARCHS)})")
        if self.d_sae <= 0:
            raise BadInput(f"--d-sae {self.d_sae}: must be positive")
        if self.arch == "topk" and not 0 < self.k <= self.d_sae:
            raise BadInput(f"--k {self.k}: must be between 1 and --d-sae ({self.d_sae})")
        for name, v in (("--lr", self.lr), ("--batch-size", self.batch_size), ("--epochs", self.epochs)):
            if not v > 0:
                raise BadInput(f"{name} {v}: must be positive")
        if self.steps is not None and self.steps <= 0:
            raise BadInput(f"--steps {self.steps}: must be positive")
        if self.l1 < 0 or self.l0 < 0:
            raise BadInput("--l1 / --l0: must not be negative")
        return self


@dataclass
class TrainResult:
    params: SAEParams
    log: list[dict] = field(default_factory=list)   # one dict per logged step
    final: dict = field(default_factory=dict)       # mse, fvu, l0, dead_frac on all tokens
    scale: float = 1.0
    seconds: float = 0.0
    codes: tuple | None = None                      # (token_id, feature, value) with token_ids


# ---------------------------------------------------------------------------- metrics
def fvu_from_sums(sse: float, sst: float) -> float:
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2.

    The definition of the contract (section 5, "Reconstruction"); 0 is perfect, 1 is as good
    as predicting the mean.
    """
    return float(sse / sst) if sst > 0 else float("nan")


def mse(sse: float, n_tokens: int, d_in: int) -> float:
    """Mean squared error per element: sum ||x - x_hat||^2 / (n_tokens * d_in)."""
    return float(sse / (n_tokens * d_in))


def mean_l0(n_active: float, n_tokens: int) -> float:
    """Mean L0: average number of features with f > 0 per token."""
    return float(n_active / n_tokens)


def dead_fraction(fired) -> float:
    """Fraction of features that never fired (f > 0) over the tokens considered."""
    return float(1.0 - fired.float().mean().item())


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


def evaluate(p: SAEParams, x, batch_size: int = 4096, token_ids: np.ndarray | None = None,
             codes: list | None = None) -> dict:
    """mse, fvu, l0 and dead_frac of the SAE ``p`` on the raw residuals ``x`` [n, d_in].

    Runs the written SAE (``compute.encode.TorchSAE``), so the figures are those of the
    stored weights, not of the training copy. The decode is a sparse product (the codes have
    at most k, or few, non-zeros per token). With ``token_ids`` and a list ``codes``, the
    non-zero codes are also appended to it as ``compute.harvest.sparse_rows`` pieces (a
    harvest of ``x`` at no extra cost).
    """
    import torch

    from saew.sae.encode import TorchSAE
    from saew.compute.activations.harvest import sparse_rows

    sae = TorchSAE.from_params(p)
    mu = x.mean(0)
    sse = sst = act = 0.0
    fired = torch.zeros(p.d_sae, dtype=torch.bool)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size]
            f = sae.encode(xb)
            x_hat = sae.decode(_csr(f))
            if codes is not None:
                codes.append(sparse_rows(f, token_ids[s:s + batch_size]))
            sse += (x_hat - xb).double().pow(2).sum().item()
            sst += (xb - mu).double().pow(2).sum().item()
            nz = f > 0
            act += nz.sum().item()
            fired |= nz.any(0)
    n, d = x.shape
    return {"mse": mse(sse, n, d), "fvu": fvu_from_sums(sse, sst), "l0": mean_l0(act, n),
            "dead_frac": dead_fraction(fired)}


def _csr(f):
    """A dense code matrix as a torch sparse CSR tensor (for a sparse x dense decode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return f.to_sparse_csr()


# ---------------------------------------------------------------------------- sparse kernels
def _scatter_rows(idx, w, y, m: int):
    """out[m, d] with out[idx[b, j]] += w[b, j] * y[b] (a sparse [m, B] @ dense [B, d])."""
    import torch

    B, k = idx.shape
    rows = torch.arange(B).repeat_interleave(k)
    at = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), w.reshape(-1), (m, B),
                                 check_invariants=False)
    return torch.sparse.mm(at, y)


def _gather_dots(g, w, idx):
    """out[b, j] = g[b] . w[idx[b, j]] (sampled dense-dense product; idx sorted per row)."""
    import torch

    B, k = idx.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(torch.arange(0, B * k + 1, k), idx.reshape(-1),
                                          torch.ones(B * k, dtype=g.dtype), (B, w.shape[0]),
                                          check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, g, w.t(), beta=0.0).values().reshape(B, k)


def _topk_sorted(pre, k: int):
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    idx, order = idx.sort(dim=-1)
    return vals.gather(-1, order), idx


# ---------------------------------------------------------------------------- the model
class _SAE:
    """Training copy of the weights (scaled space), with W_enc stored as rows [d_sae, d_in]."""

    def __init__(self, xs, b_dec, cfg: TrainConfig, gen):
        import torch

        m, d = cfg.d_sae, xs.shape[1]
        w_dec = torch.randn(m, d, generator=gen)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.w_dec = w_dec
        self.w_enc = w_dec.clone()          # encoder rows = decoder rows (tied init)
        self.b_enc = torch.zeros(m)
        self.b_dec = b_dec.clone()
        self.log_thr = torch.full((m,), math.log(cfg.init_threshold)) if cfg.arch == "jumprelu" else None
        for t in self.tensors():
            t.requires_grad_(cfg.arch != "topk")

    def tensors(self) -> list:
        return [t for t in (self.w_enc, self.b_enc, self.w_dec, self.b_dec, self.log_thr) if t is not None]


class _JumpReLU:
    @staticmethod
    def fns():
        import torch

        def rect(u):
            return ((u > -0.5) & (u < 0.5)).to(u.dtype)

        class JumpReLU(torch.autograd.Function):
            """f = pre * H(pre - theta); d/dtheta = -(theta/eps) K((pre - theta)/eps)."""

            @staticmethod
            def forward(ctx, pre, thr, eps):
                ctx.save_for_backward(pre, thr)
                ctx.eps = eps
                return pre * (pre > thr)

            @staticmethod
            def backward(ctx, g):
                pre, thr = ctx.saved_tensors
                d_pre = g * (pre > thr)
                d_thr = (-(thr / ctx.eps) * rect((pre - thr) / ctx.eps) * g).sum(0)
                return d_pre, d_thr, None

        class Step(torch.autograd.Function):
            """H(pre - theta); d/dtheta = -(1/eps) K((pre - theta)/eps), nothing to pre."""

            @staticmethod
            def forward(ctx, pre, thr, eps):
                ctx.save_for_backward(pre, thr)
                ctx.eps = eps
                return (pre > thr).to(pre.dtype)

            @staticmethod
            def backward(ctx, g):
                pre, thr = ctx.saved_tensors
                d_thr = (-(1.0 / ctx.eps) * rect((pre - thr) / ctx.eps) * g).sum(0)
                return None, d_thr, None

        return JumpReLU, Step


def _dense_step(s: _SAE, x, w, cfg: TrainConfig, fns, ramp: float = 1.0):
    """ReLU / JumpReLU: autograd; returns (sse, n_active, fired mask, x_hat)."""
    import torch

    pre = torch.addmm(s.b_enc, x - s.b_dec, s.w_enc.t())
    if cfg.arch == "relu":
        f = pre.clamp_min(0)
        sparsity = ramp * cfg.l1 * f.sum()
    else:
        thr = s.log_thr.exp()
        f = fns[0].apply(pre, thr, cfg.bandwidth)
        sparsity = ramp * cfg.l0 * fns[1].apply(pre, thr, cfg.bandwidth).sum()
    x_hat = f @ s.w_dec + s.b_dec
    err = (x_hat - x).pow(2).sum(1)
    loss = ((w * err).sum() + sparsity) / x.shape[0]
    sse = err.sum()
    for t in s.tensors():
        t.grad = None
    loss.backward()
    nz = f.detach() > 0
    return sse.item(), nz.sum().item(), nz.any(0), x_hat.detach()


def _topk_step(s: _SAE, x, w, cfg: TrainConfig, dead):
    """TopK + AuxK with hand-written sparse gradients (set on ``.grad``).

    loss = sum_b w_b (||x_hat - x||^2 + aux_coef ||e_hat - (x - x_hat)||^2) / B; AuxK does not
    move b_dec (its target is detached, as in Gao et al.).
    """
    import torch

    B, m = x.shape[0], cfg.d_sae
    xc = x - s.b_dec
    pre = torch.addmm(s.b_enc, xc, s.w_enc.t())
    vals, idx = _topk_sorted(pre, cfg.k)
    a = vals.clamp_min(0)
    x_hat = torch.nn.functional.embedding_bag(idx, s.w_dec, per_sample_weights=a, mode="sum") + s.b_dec
    e = x_hat - x
    g = (2.0 / B) * w[:, None] * e
    dpre = _gather_dots(g, s.w_dec, idx) * (vals > 0)
    db_enc = torch.bincount(idx.reshape(-1), weights=dpre.reshape(-1), minlength=m).float()
    db_dec = g.sum(0) - db_enc @ s.w_enc
    n_dead = int(dead.sum())
    if n_dead and cfg.aux_coef > 0:
        kk = min(cfg.aux_k or x.shape[1] // 2, n_dead)
        dead_ids = dead.nonzero().squeeze(1)
        vals2, j2 = _topk_sorted(pre[:, dead_ids], kk)
        idx2 = dead_ids[j2]  # ascending per row, as dead_ids is
        a2 = vals2.clamp_min(0)
        e_hat = torch.nn.functional.embedding_bag(idx2, s.w_dec, per_sample_weights=a2, mode="sum")
        g2 = (2.0 * cfg.aux_coef / B) * w[:, None] * (e_hat + e)
        dpre2 = _gather_dots(g2, s.w_dec, idx2) * (vals2 > 0)
        db_enc += torch.bincount(idx2.reshape(-1), weights=dpre2.reshape(-1), minlength=m).float()
        s.w_dec.grad = _scatter_rows(idx, a, g, m) + _scatter_rows(idx2, a2, g2, m)
        s.w_enc.grad = _scatter_rows(idx, dpre, xc, m) + _scatter_rows(idx2, dpre2, xc, m)
    else:
        s.w_dec.grad = _scatter_rows(idx, a, g, m)
        s.w_enc.grad = _scatter_rows(idx, dpre, xc, m)
    s.b_enc.grad = db_enc
    s.b_dec.grad = db_dec
    fired = torch.zeros(m, dtype=torch.bool)
    fired[idx[a > 0]] = True
    return e.pow(2).sum().item(), (a > 0).sum().item(), fired, x_hat


def _lr_factor(t: int, steps: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * steps))
    if t <= warm:
        return t / warm
    decay = int(cfg.decay_frac * steps)
    if decay and t > steps - decay:
        return max(0.0, (steps - t + 1) / (decay + 1))
    return 1.0


def _resample(s: _SAE, opt, dead, xs, w_tok, cfg: TrainConfig, gen, forward) -> None:
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
              token_ids: np.ndarray | None = None) -> TrainResult:
    """Train one SAE on raw residuals ``x`` (float32 tensor [n_tokens, d_in]).

    Returns the folded weights (raw-space SAE, normalize 'none'), the step log and the final
    metrics on all of ``x`` (evaluated through the written weights); with ``token_ids`` (one
    per row of x) also the codes of x as (token_id, feature, value) arrays.
    """
    import torch

    from saew.progress import progress

    t0 = time.perf_counter()
    x = x.float().contiguous()
    n, d = x.shape
    cfg.check()
    gen = torch.Generator().manual_seed(cfg.seed)
    scale, centre = input_scale(x)
    xs = x * scale
    w_tok = token_weights((xs - centre * scale).pow(2).sum(1), d, cfg.outlier_clip)
    s = _SAE(xs, centre * scale, cfg, gen)
    fns = _JumpReLU.fns() if cfg.arch == "jumprelu" else None
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
                sse, n_act, fired, _ = _topk_step(s, xb, wb, cfg, dead)
        else:
            sse, n_act, fired, _ = _dense_step(s, xb, wb, cfg, fns,
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
                        "fvu": fvu_from_sums(sse, sst), "l0": mean_l0(n_act, B),
                        "dead_frac": float(((seen - last_fired) >= min(window, seen)).float().mean())})
    params = fold(s, scale, cfg)
    pieces: list | None = None if token_ids is None else []
    final = evaluate(params, x, token_ids=token_ids, codes=pieces)
    log.append({"step": steps, "tokens_seen": seen, **final})
    codes = None if pieces is None else tuple(np.concatenate([q[i] for q in pieces]) for i in range(3))
    return TrainResult(params=params, log=log, final=final, scale=scale,
                       seconds=time.perf_counter() - t0, codes=codes)


def fold(s: _SAE, scale: float, cfg: TrainConfig) -> SAEParams:
    """Raw-space weights from the scaled-space training copy (see the module docstring)."""
    thr = None
    if s.log_thr is not None:
        thr = (s.log_thr.detach().exp() / scale).numpy().astype(np.float32)
    return SAEParams(
        w_enc=np.ascontiguousarray(s.w_enc.detach().numpy().T, dtype=np.float32),
        b_enc=(s.b_enc.detach() / scale).numpy().astype(np.float32),
        w_dec=s.w_dec.detach().numpy().astype(np.float32).copy(),
        b_dec=(s.b_dec.detach() / scale).numpy().astype(np.float32),
        architecture=cfg.arch, threshold=thr, k=cfg.k if cfg.arch == "topk" else None,
        normalize="none", apply_b_dec_to_input=True).validate("trained SAE")


# ---------------------------------------------------------------------------- the command
def parse_layers(spec_: str, n_layers: int) -> list[int]:
    """``A-B`` (inclusive), ``L`` or ``all`` -> layers, each in [0, n_layers)."""
    s = str(spec_).strip()
    try:
        if s == "all":
            return list(range(n_layers))
        if "-" in s[1:]:
            a, b = s.split("-", 1) if not s.startswith("-") else (None, None)
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(s)
    except (TypeError, ValueError):
        raise BadInput(f"--layers {spec_!r}: expected A-B, a single layer L, or all") from None
    if lo < 0 or hi < lo:
        raise BadInput(f"--layers {spec_!r}: expected 0 <= A <= B")
    if hi >= n_layers:
        raise BadInput(f"--layers {spec_!r}: the model has {n_layers} layers (0-{n_layers - 1})")
    return list(range(lo, hi + 1))


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release name for the trained SAEs")
    p.add_argument("--model", default="smollm2", help="minilm, smollm2 (default) or a local model path")
    p.add_argument("--corpus", default="builtin", help="builtin (default) or a local text file")
    p.add_argument("--layers", default="all", help="A-B, a single layer L, or all (default)")
    p.add_argument("--arch", default="topk", help="topk (default), relu or jumprelu")
    p.add_argument("--d-sae", type=int, default=None,
                   help=f"SAE width (default {EXPANSION} x d_model)")
    p.add_argument("--k", type=int, default=32, help="active features per token for topk (default 32)")
    p.add_argument("--l1", type=float, default=TrainConfig.l1, help="relu L1 coefficient (default 2)")
    p.add_argument("--l0", type=float, default=TrainConfig.l0, help="jumprelu L0 coefficient (default 1)")
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                   help=f"residual tokens harvested per layer (default {DEFAULT_TOKENS})")
    p.add_argument("--epochs", type=float, default=TrainConfig.epochs,
                   help="passes over the tokens (default 5)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="Adam learning rate (default 4e-3)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="tokens per step (default 1024)")
    p.add_argument("--workers", type=int, default=None,
                   help="layers trained at once, each in its own single-threaded process "
                        "(default: min(2, CPU count, layers)); 1 trains in this process")
    p.add_argument("--harvest", action="store_true",
                   help="also record the training pass as a harvest: encode the same residuals "
                        "with the new SAEs and write tokens, activations and activation_sets, "
                        "exactly as a following `saew harvest` over the same tokens would (one "
                        "model pass instead of two)")


def _config(args, d_model: int | None, seed: int) -> TrainConfig:
    """The training config of the command line; without ``d_model`` (model not loaded yet) an
    unset ``--d-sae`` is not checked against ``--k``."""
    if args.d_sae is not None:
        d_sae = args.d_sae
    else:
        d_sae = EXPANSION * d_model if d_model else max(1, args.k)
    return TrainConfig(arch=args.arch, d_sae=d_sae, k=args.k, l1=args.l1, l0=args.l0, lr=args.lr,
                       batch_size=args.batch_size, epochs=args.epochs, steps=args.steps,
                       seed=seed).check()


def _train_job(layer: int, x: np.ndarray, cfg: TrainConfig, model_name: str, hook: str,
               token_ids: np.ndarray | None):
    """Train one layer's SAE (in a worker process or in-process) and, with ``token_ids``, encode
    its own training tokens: (layer, n_tokens, TrainResult, params, codes or None)."""
    import torch

    res = train_sae(torch.from_numpy(x), cfg, desc=f"train layer {layer}", token_ids=token_ids)
    codes, res.codes = res.codes, None
    return layer, int(x.shape[0]), res, replace(res.params, model=model_name, hook=hook), codes


def run(args, ctx) -> str:
    import shutil

    import torch

    from saew.sae import saelens as saelens_io
    from saew.compute.corpus import load_corpus
    from saew.compute.lm import load_model, residuals
    from saew.compute.parallel import default_workers, ordered_map
    from saew.progress import progress
    from saew.storage.saes import write_sae

    release = args.release
    if args.tokens is None or args.tokens <= 0:
        raise BadInput(f"--tokens {args.tokens}: must be positive")
    _config(args, None, ctx.seed)  # fail fast, before loading a model
    if args.workers is not None and args.workers < 1:
        raise BadInput(f"--workers {args.workers}: must be at least 1")
    torch.set_num_threads(2)
    model = load_model(args.model)
    spec_ = model.spec
    layer_list = parse_layers(args.layers, spec_.n_layers)
    cfg = _config(args, spec_.d_model, ctx.seed)
    other = ctx.lake.query(
        "SELECT DISTINCT d_in FROM saes WHERE release = ? AND NOT list_contains(?, layer)",
        [release, layer_list]).column("d_in").to_pylist()
    if other and other != [spec_.d_model]:
        raise BadInput(f"--release {release!r}: holds SAEs with d_in {other[0]}, "
                       f"but {spec_.name} has d_model {spec_.d_model}")
    if getattr(args, "harvest", False):
        others = ctx.lake.query(
            "SELECT layer FROM saes WHERE release = ? AND NOT list_contains(?, layer) ORDER BY 1",
            [release, layer_list]).column("layer").to_pylist()
        if others:
            raise BadInput(f"--harvest: release {release!r} also holds SAEs at layers "
                           f"{', '.join(map(str, others))}, which this run does not train; "
                           f"train them too, or run saew harvest afterwards")
    docs = load_corpus(args.corpus, ctx.seed)
    metas: list | None = [] if getattr(args, "harvest", False) else None
    acts = residuals(model, docs, args.tokens, layer_list, tokens=metas)
    token_ids = np.concatenate([b.token_ids for b in metas]) if metas else None
    coo: dict[int, list] = {}
    hooks = {layer: model.hook_name(layer) for layer in layer_list}
    del model
    saes_dir = ctx.home / "saes" / release
    staging = saes_dir / f".staging-{ctx.run_id}"
    lines = [f"trained {len(layer_list)} {cfg.arch} SAE(s) (d_sae {cfg.d_sae}) for {release!r} "
             f"on {spec_.name}:", "  layer  tokens    fvu     l0  dead_frac  seconds"]
    try:
        done: list[tuple[int, str, SAEParams]] = []
        workers = default_workers(len(layer_list)) if args.workers is None else args.workers
        jobs = ((layer, acts.pop(layer).numpy(), cfg, spec_.name, hooks[layer], token_ids)
                for layer in layer_list)
        for layer, n_tokens, res, p, codes in progress(ordered_map(_train_job, jobs, workers),
                                                       total=len(layer_list), desc="train",
                                                       unit="layer"):
            hook = hooks[layer]
            if codes is not None:
                coo[layer] = [codes]
            saelens_io.write_folder(staging / hook, p, metadata={
                "saew_release": release, "saew_run_id": ctx.run_id, "training_tokens": int(res.log[-1]["tokens_seen"]),
                "dataset_path": str(args.corpus), "context_size": None, "prepend_bos": True})
            rows = res.log
            ctx.lake.write("training_log", {
                "step": [r["step"] for r in rows], "tokens_seen": [r["tokens_seen"] for r in rows],
                "mse": [r["mse"] for r in rows], "fvu": [r["fvu"] for r in rows],
                "l0": [r["l0"] for r in rows], "dead_frac": [r["dead_frac"] for r in rows],
            }, release=release, layer=layer)
            done.append((layer, hook, p))
            f = res.final
            lines.append(f"  {layer:5d}  {n_tokens:6d}  {f['fvu']:.3f}  {f['l0']:5.1f}  "
                         f"{f['dead_frac']:9.3f}  {res.seconds:7.1f}")
        for layer, hook, p in done:
            dest = saes_dir / hook
            saelens_io.replace_dir(staging / hook, dest)
            write_sae(ctx.lake, release, layer, p, source_format="saelens", source_path=str(dest),
                      source_sha256=saelens_io.sha256_file(dest / saelens_io.WEIGHTS_FILE),
                      run_id=ctx.run_id)
        if metas is not None:
            from saew.compute.activations.harvest import write_harvest

            n_seen, _ = write_harvest(ctx.lake, release, ctx.run_id, metas, coo, args.corpus)
            lines.append(f"  harvested the same {n_seen} tokens: tokens, activations, activation_sets")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lines.append(f"  folders: {saes_dir}")
    return "\n".join(lines)

