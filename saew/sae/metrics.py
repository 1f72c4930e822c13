"""Reconstruction and sparsity metrics of an SAE (contract section 5), one function per formula.

Used by training (``compute.training``: the step log and the final figures) and by
``saew evaluate`` (reconstruction through matches).
"""
from __future__ import annotations


def fvu(sse: float, sst: float) -> float:
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

