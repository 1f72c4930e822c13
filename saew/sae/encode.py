"""The SAE forward pass, as SAELens / OpenAI / Gemma Scope define it, in torch (CPU).

encode(x):
  layer_norm inputs:  x <- (x - mean(x)) / (std(x) + eps)   (OpenAI v5, SAELens ``layer_norm``)
  pre  = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc
  relu:     f = max(pre, 0)
  jumprelu: f = pre * 1[pre > threshold]
  topk:     f = max(pre, 0) on the k largest entries of pre, 0 elsewhere
decode(f) = f @ W_dec + b_dec, then undo the layer norm (x_hat * std + mean).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saew.sae.params import SAEParams

LN_EPS = 1e-5


@dataclass
class TorchSAE:
    w_enc: torch.Tensor
    b_enc: torch.Tensor
    w_dec: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None
    architecture: str
    k: int | None
    normalize: str
    apply_b_dec_to_input: bool

    @classmethod
    def from_params(cls, p: SAEParams) -> "TorchSAE":
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))  # noqa: E731
        return cls(t(p.w_enc), t(p.b_enc), t(p.w_dec), t(p.b_dec),
                   None if p.threshold is None else t(p.threshold), p.architecture, p.k,
                   p.normalize, p.apply_b_dec_to_input)

    def normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        if self.normalize != "layer_norm":
            return x, None
        mu = x.mean(-1, keepdim=True)
        x = x - mu
        std = x.std(-1, keepdim=True)
        return x / (std + LN_EPS), (mu, std)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.normalise(x)
        return self.encode_normalised(x)

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """x - b_dec * apply_b_dec_to_input, the encoder's input (x already normalised)."""
        return x - self.b_dec if self.apply_b_dec_to_input else x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc, x already normalised."""
        return self.centre(x) @ self.w_enc + self.b_enc

    def encode_normalised(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        if self.architecture == "jumprelu":
            thr = self.threshold if self.threshold is not None else torch.zeros_like(self.b_enc)
            return pre * (pre > thr)
        if self.architecture == "topk":
            vals, idx = pre.topk(int(self.k), dim=-1)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.clamp_min(0))
        return pre.clamp_min(0)

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The non-zero entries of ``encode(x)`` as (row, feature, value) tensors, row-major (by
        row, then feature), the same values. topk: straight from the k largest pre-activations,
        without the dense [n, d_sae] code matrix and its scan; otherwise from the dense codes."""
        if self.architecture != "topk":
            f = self.encode(x)
            idx = f.nonzero()
            return idx[:, 0], idx[:, 1], f[idx[:, 0], idx[:, 1]]
        vals, idx = self.pre_activations(self.normalise(x)[0]).topk(int(self.k), dim=-1)
        idx, order = idx.sort(dim=-1)
        vals = vals.gather(-1, order).clamp_min(0)
        keep = vals > 0
        rows = torch.arange(idx.shape[0], device=idx.device).unsqueeze(1).expand_as(idx)
        return rows[keep], idx[keep], vals[keep]

    def decode(self, f: torch.Tensor, norm: tuple | None = None) -> torch.Tensor:
        x = f @ self.w_dec + self.b_dec
        if norm is not None:
            mu, std = norm
            x = x * (std + LN_EPS) + mu
        return x
