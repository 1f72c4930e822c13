"""How an SAE is represented in memory: its weights in SAELens orientation, validated.

Orientation everywhere: ``w_enc`` is [d_in, d_sae] (encoder columns), ``w_dec`` is
[d_sae, d_in] (decoder rows), as in SAELens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saew.errors import BadInput

ARCHITECTURES = ("relu", "jumprelu", "topk", "gated")


@dataclass(frozen=True)
class SAEParams:
    """Weights of one SAE, float32, SAELens orientation."""
    w_enc: np.ndarray            # [d_in, d_sae]
    b_enc: np.ndarray            # [d_sae]
    w_dec: np.ndarray            # [d_sae, d_in]
    b_dec: np.ndarray            # [d_in]
    architecture: str = "relu"
    threshold: np.ndarray | None = None  # [d_sae] for jumprelu
    k: int | None = None
    normalize: str = "none"      # input normalisation: none | layer_norm
    apply_b_dec_to_input: bool = True  # subtract b_dec before encoding (SAELens, OpenAI, dictionary_learning)
    model: str = ""
    hook: str = ""

    @property
    def d_in(self) -> int:
        return int(self.w_dec.shape[1])

    @property
    def d_sae(self) -> int:
        return int(self.w_dec.shape[0])

    def validate(self, source: str) -> "SAEParams":
        """Shapes consistent and values finite, else BadInput naming ``source``."""
        d_sae, d_in = self.w_dec.shape
        want = {"W_enc": (self.w_enc.shape, (d_in, d_sae)), "b_enc": (self.b_enc.shape, (d_sae,)),
                "b_dec": (self.b_dec.shape, (d_in,))}
        if self.threshold is not None:
            want["threshold"] = (self.threshold.shape, (d_sae,))
        for name, (got, exp) in want.items():
            if tuple(got) != exp:
                raise BadInput(f"{source}: {name} has shape {tuple(got)}, expected {exp} "
                               f"(W_dec is [d_sae={d_sae}, d_in={d_in}])")
        for name in ("w_enc", "b_enc", "w_dec", "b_dec", "threshold"):
            a = getattr(self, name)
            if a is not None and not np.isfinite(a).all():
                raise BadInput(f"{source}: {name} holds NaN or Inf values")
        if self.architecture not in ARCHITECTURES:
            raise BadInput(f"{source}: unknown architecture {self.architecture!r}")
        if self.architecture == "topk" and not self.k:
            raise BadInput(f"{source}: a topk SAE needs k")
        return self
