"""The training copy of an SAE and one optimisation step of each architecture.

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
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from saew.compute.training.config import TrainConfig
from saew.sae.params import SAEParams


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
class TrainingSAE:
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


def jumprelu_fns():
    """(JumpReLU, Step): autograd functions with the rectangle-kernel pseudo-derivatives."""
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


def dense_step(s: TrainingSAE, x, w, cfg: TrainConfig, fns, ramp: float = 1.0):
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


def _exact_pre(xc, s: TrainingSAE, idx):
    """float32 pre-activations xc . w_enc_i + b_enc_i of the features ``idx`` (sorted per row)."""
    return _gather_dots(xc, s.w_enc, idx) + s.b_enc[idx]


def topk_step(s: TrainingSAE, x, w, cfg: TrainConfig, dead, select_bf16: bool = False):
    """TopK + AuxK with hand-written sparse gradients (set on ``.grad``).

    loss = sum_b w_b (||x_hat - x||^2 + aux_coef ||e_hat - (x - x_hat)||^2) / B; AuxK does not
    move b_dec (its target is detached, as in Gao et al.).

    ``select_bf16`` (``TrainConfig.select``): the k features of each token (and AuxK's) are
    chosen on bfloat16 pre-activations (a native bf16 GEMM is 4x the float32 one on this CPU),
    their values and every gradient computed in float32. Against the float32 choice, features
    whose pre-activations tie within bf16 rounding may swap at the k-th place; as mixed
    precision training does, and only during training (the written SAE encodes exactly).
    """
    import torch

    B, m = x.shape[0], cfg.d_sae
    xc = x - s.b_dec
    if select_bf16:
        pre = torch.addmm(s.b_enc.bfloat16(), xc.bfloat16(), s.w_enc.bfloat16().t())
    else:
        pre = torch.addmm(s.b_enc, xc, s.w_enc.t())
    vals, idx = _topk_sorted(pre, cfg.k)
    if select_bf16:    # exact values of the chosen features
        vals = _exact_pre(xc, s, idx)
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
        if select_bf16:
            vals2 = _exact_pre(xc, s, idx2)
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


def to_params(s: TrainingSAE, scale: float, cfg: TrainConfig) -> SAEParams:
    """Raw-space weights from the scaled-space training copy (inputs scaled by s, see
    ``compute.training.trainer``): W_enc = W_enc', b_enc = b_enc' / s, threshold = theta' / s,
    b_dec = b_dec' / s, W_dec = W_dec' (so f = f' / s and x_hat = x_hat' / s)."""
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


