"""SAE codes as sparse COO pieces, and a harvest's lake write (tokens, activations, activation_sets,
examples).

Shared by ``saew harvest`` and ``saew train --harvest`` (which records its own training pass
as a harvest): ``sparse_rows`` turns a batch of codes into (token_id, feature, value) pieces,
``write_harvest`` writes the pieces of every layer with the batches' token metadata, and the
layer's activation examples (``compute.activations.examples``: running top-K and quantile
samples, fed batch by batch by the caller or here piece by piece).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from saew.compute.activations.examples import DEFAULT_EXAMPLES, ExampleSelector, TokenTable, example_rows
from saew.errors import BadInput
from saew.storage.lineage import drop_from_activations


def check_examples(k: int) -> None:
    if k < 0:
        raise BadInput(f"--examples {k}: must be 0 or more")


def token_table(batches: list) -> tuple[dict, TokenTable]:
    """The ``tokens`` columns of a run's batches (their token metadata: token_ids, doc, pos and
    tokens, a list of str or a string Arrow array) and the same tokens ordered by token_id."""
    token_id = np.concatenate([b.token_ids for b in batches])
    doc = np.concatenate([b.doc for b in batches])
    pos = np.concatenate([b.pos for b in batches])
    token = pa.concat_arrays([b.tokens if isinstance(b.tokens, pa.Array) else pa.array(b.tokens, pa.string())
                              for b in batches])
    order = np.argsort(token_id, kind="stable")
    return ({"token_id": token_id, "doc": doc, "pos": pos, "token": token},
            TokenTable(token_id[order], doc[order], pos[order], token.take(pa.array(order))))


def write_layer_meta(lake, release: str, layer: int, run_id: str, n_seen: int,
                     sel: ExampleSelector, toks, codes) -> None:
    """One harvested layer's ``examples`` (``toks``: the run's ``TokenTable`` or a reader of
    the windows' tokens; ``codes``: its sparse codes, or a lookup function; see
    ``examples.example_rows``) and its ``activation_sets`` row (N = ``n_seen``)."""
    lake.write("examples", example_rows(sel, toks, codes), release=release, layer=int(layer))
    lake.write("activation_sets", {"n_tokens": [n_seen], "source": ["harvest"],
                                   "run_id": [run_id]}, release=release, layer=int(layer))


def write_harvest(lake, release: str, run_id: str, batches: list, coo: dict[int, list],
                  corpus: str, selectors: dict[int, ExampleSelector] | None = None,
                  n_examples: int = DEFAULT_EXAMPLES) -> tuple[int, dict[int, float]]:
    """Write ``tokens`` (from the batches' token metadata), one ``activations`` partition per
    layer (the concatenated COO pieces, the layer written whole: shard 0), ``activation_sets``
    and ``examples`` (from ``selectors`` when the caller streamed the batches through them, else
    selected here over the pieces), dropping the rows computed from the layers' previous
    activations (``storage.lineage``); (tokens seen, mean L0 per layer)."""
    n_seen = sum(len(b) for b in batches)
    if n_seen == 0:
        raise BadInput(f"--corpus {corpus}: produced no tokens")
    cols, toks = token_table(batches)
    drop_from_activations(lake, release, sorted(coo))
    lake.write("tokens", cols, release=release)
    n_active = {}
    for L in sorted(coo):
        pieces = coo.pop(L)
        sel = (selectors or {}).get(L)
        if sel is None:
            d_sae = max((int(p[1].max()) + 1 for p in pieces if len(p[1])), default=1)
            sel = ExampleSelector(d_sae, n_examples)
            for p in pieces:
                sel.update(*p)
        tid, feat, val = (np.concatenate([p[i] for p in pieces]) for i in range(3))
        lake.write("activations", {"token_id": tid, "feature": feat, "value": val},
                   release=release, layer=int(L))
        write_layer_meta(lake, release, L, run_id, n_seen, sel, toks, (tid, feat, val))
        n_active[int(L)] = len(val) / n_seen
    return n_seen, n_active


def sparse_rows(f, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero entries of an activation matrix f [n, d_sae] as (token_id int64, feature int32,
    value float32), row-major (sorted by token, then feature)."""
    idx = f.nonzero()
    rows = idx[:, 0].numpy()
    feat = idx[:, 1].numpy().astype(np.int32)
    val = f[idx[:, 0], idx[:, 1]].numpy().astype(np.float32)
    return token_ids[rows].astype(np.int64), feat, val


def sparse_codes(sae, x, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sparse_rows(sae.encode(x), token_ids)``, the same arrays, without the dense code
    matrix where the SAE can skip it (``TorchSAE.encode_sparse``: topk). ``x`` and the SAE on
    one device; only the sparse codes come back to the host (``.cpu()``: a no-op on the CPU,
    a synchronising copy from a GPU)."""
    rows, feat, val = (t.cpu() for t in sae.encode_sparse(x))
    return (token_ids[rows.numpy()].astype(np.int64), feat.numpy().astype(np.int32),
            val.numpy().astype(np.float32))


def sae_on(sae, device: str):
    """A ``TorchSAE`` with its tensors on ``device`` (the same object on ``cpu``)."""
    import dataclasses

    import torch

    if str(torch.device(device)) == "cpu":
        return sae
    moved = {f.name: getattr(sae, f.name).to(device) for f in dataclasses.fields(sae)
             if isinstance(getattr(sae, f.name), torch.Tensor)}
    return dataclasses.replace(sae, **moved)
