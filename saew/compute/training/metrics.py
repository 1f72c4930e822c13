"""The figures of a trained SAE on residuals: mse, fvu, l0 and dead_frac, through the written weights."""
from __future__ import annotations

import warnings

import numpy as np

from saew.sae.metrics import dead_fraction, fvu, mean_l0, mse
from saew.sae.params import SAEParams


def evaluate(p: SAEParams, x, batch_size: int = 4096, token_ids: np.ndarray | None = None,
             codes: list | None = None) -> dict:
    """mse, fvu, l0 and dead_frac of the SAE ``p`` on the raw residuals ``x`` [n, d_in].

    Runs the written SAE (``sae.encode.TorchSAE``), so the figures are those of the
    stored weights, not of the training copy. The decode is a sparse product (the codes have
    at most k, or few, non-zeros per token). With ``token_ids`` and a list ``codes``, the
    non-zero codes are also appended to it as ``compute.activations.codes.sparse_rows`` pieces (a
    harvest of ``x`` at no extra cost).
    """
    import torch

    from saew.sae.encode import TorchSAE
    from saew.compute.activations.codes import sparse_rows

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
    return {"mse": mse(sse, n, d), "fvu": fvu(sse, sst), "l0": mean_l0(act, n),
            "dead_frac": dead_fraction(fired)}


def _csr(f):
    """A dense code matrix as a torch sparse CSR tensor (for a sparse x dense decode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return f.to_sparse_csr()

