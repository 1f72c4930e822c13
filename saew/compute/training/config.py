"""The training configuration of one SAE: architecture, sparsity, optimiser and schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

from saew.compute.cpu import SELECT_DTYPES as SELECTS
from saew.errors import BadInput

ARCHS = ("topk", "relu", "jumprelu")


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
    # topk: the dtype the k features of a token are chosen in (model.topk_step); values and
    # gradients are float32 either way. auto: bfloat16 on a CPU that computes it natively
    select: str = "auto"

    def select_bf16(self, device: str = "cpu") -> bool:
        """Whether TopK training chooses its features on bfloat16 pre-activations."""
        if self.arch != "topk" or self.select == "float32":
            return False
        if self.select == "bfloat16":
            return True
        from saew.compute.cpu import native_bf16

        return device == "cpu" and native_bf16()

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
        if self.select not in SELECTS:
            raise BadInput(f"--select-dtype {self.select!r}: expected one of {', '.join(SELECTS)}")
        if self.l1 < 0 or self.l0 < 0:
            raise BadInput("--l1 / --l0: must not be negative")
        return self

