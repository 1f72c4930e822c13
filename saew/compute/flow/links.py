"""Top-k predecessors by decoder cosine, in blocks of destination rows (no feature loop).

For destination decoder rows d_j (one SAE's features) and source rows s_i (another SAE's),
cos(j, i) = <d_j, s_i> / (||d_j|| ||s_i||) (0 for a zero row). ``top_predecessors`` returns,
for every j, the k sources of largest cosine, best first: one float32 matrix product per block
of destination rows, each followed by ``torch.topk`` along the row, so memory stays at
``block_bytes`` for the cosines however wide the SAEs are (a block never holds more than
``block_bytes / (4 n_src)`` rows).
"""
from __future__ import annotations

import numpy as np

BLOCK_BYTES = 64 << 20     # cosines held at once per block (float32)


def unit_rows(w) -> "torch.Tensor":  # noqa: F821 - torch is imported lazily
    """Rows scaled to unit L2 norm, float32; a zero row stays zero (its cosines are 0)."""
    import torch

    t = torch.from_numpy(np.array(w, dtype=np.float32, order="C"))   # a copy: the lake's arrays are read-only
    norm = t.norm(dim=1, keepdim=True)
    return t / torch.where(norm > 0, norm, torch.ones_like(norm))


def top_predecessors(dst, src, k: int, block_bytes: int = BLOCK_BYTES, device: str = "cpu"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(index int32 [n_dst, k'], cosine float32 [n_dst, k']) with k' = min(k, n_src): for each
    destination row, the source rows of the k largest cosines, in decreasing cosine.

    ``dst`` and ``src`` are decoder matrices [n, d] (numpy; normalised here); the products run
    on torch ``device``."""
    import torch

    d, s = unit_rows(dst).to(device), unit_rows(src).to(device)
    n_dst, n_src = d.shape[0], s.shape[0]
    kk = min(int(k), n_src)
    idx = np.empty((n_dst, kk), np.int32)
    cos = np.empty((n_dst, kk), np.float32)
    if n_dst == 0 or kk == 0:
        return idx, cos
    rows = max(1, int(block_bytes) // (4 * n_src))
    st = s.t().contiguous()
    with torch.inference_mode():
        for a in range(0, n_dst, rows):          # blocks of rows, not features
            v, i = torch.topk(d[a:a + rows] @ st, kk, dim=1, largest=True, sorted=True)
            idx[a:a + rows] = i.cpu().numpy()
            cos[a:a + rows] = v.cpu().numpy()
    return idx, cos
