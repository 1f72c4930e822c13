"""Lake reads that several steps need: adjacent layer pairs, description embeddings, activations.

A step reads another step's output through these (never by importing that step):
``adjacent_pairs`` (match, evaluate), ``pick_embedder`` / ``load_embeddings`` (the text-space
match, cluster and transport), ``activation_layers`` / ``n_tokens`` / ``load_activity`` /
``token_blocks`` (coactivation, correlate, communities; a sharded layer is read block by block).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.storage.lake import Lake, list_matrix
from saew.storage.saes import d_sae as sae_width
from saew.storage.saes import require_release

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"   # ``saew embed``'s default, as stored in embeddings.embedder
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------- layers
def adjacent_pairs(lake: Lake, release: str) -> list[tuple[int, int]]:
    """Consecutive ingested layers (l, l+1 in the release's layer order); BadInput with fewer than two."""
    ls = require_release(lake, release)
    if len(ls) < 2:
        raise BadInput(f"--release {release!r}: only layer {ls[0]} is ingested; matching needs "
                       f"at least two layers")
    return list(zip(ls[:-1], ls[1:]))


# ---------------------------------------------------------------------------- embeddings
def embedder_name(folder: Path) -> str:
    """The stored short name of a sentence-transformers folder: its name, with characters
    outside ``[A-Za-z0-9._-]`` turned into ``-`` (empty if nothing is left)."""
    return _NAME_OK.sub("-", folder.name).strip("-.")


def pick_embedder(lake: Lake, release: str, embedder: str | None) -> str:
    """Which stored embeddings a text-space step uses.

    ``--embedder`` if given (a short name, or a path whose folder name is stored); else the only
    embedder present for the release; else the default one if present; else BadInput.
    """
    names = lake.query("SELECT DISTINCT embedder FROM embeddings WHERE release = ? ORDER BY 1",
                       [release]).column("embedder").to_pylist()
    if not names:
        raise BadInput(f"--release {release!r}: no description embeddings; run saew embed first")
    if embedder is not None:
        short = embedder if embedder in names else embedder_name(Path(embedder))
        if short not in names:
            raise BadInput(f"--embedder {embedder!r}: no embeddings of release {release!r} "
                           f"from it (present: {', '.join(names)})")
        return short
    if len(names) == 1:
        return names[0]
    if DEFAULT_EMBEDDER in names:
        return DEFAULT_EMBEDDER
    raise BadInput(f"--release {release!r}: several embedders ({', '.join(names)}); choose one "
                   f"with --embedder")


def load_embeddings(lake: Lake, release: str, layer: int, embedder: str) -> tuple[np.ndarray, np.ndarray]:
    """(features int64 [m], embeddings float32 [m, dim]) of one layer, ordered by feature."""
    t = lake.query("SELECT feature, embedding FROM embeddings WHERE release = ? AND layer = ? "
                   "AND embedder = ? ORDER BY feature", [release, int(layer), embedder])
    feats = t.column("feature").to_numpy().astype(np.int64)
    return feats, list_matrix(t.column("embedding"))


# ---------------------------------------------------------------------------- activations
@dataclass(frozen=True)
class Activity:
    """The active entries (value > 0) of one layer, as (token_id, feature, value) triples."""
    token_id: np.ndarray   # int64 [nnz]
    feature: np.ndarray    # int32 [nnz]
    value: np.ndarray      # float32 [nnz]
    d_sae: int
    n_tokens: int | None   # N from activation_sets (all tokens seen), None if no row

    @property
    def nnz(self) -> int:
        return int(self.feature.shape[0])


def activation_layers(lake: Lake, release: str) -> list[int]:
    """Layers of ``release`` that have an SAE and either activations or an activation set."""
    layers = require_release(lake, release)
    have = lake.query(
        "SELECT DISTINCT layer FROM activation_sets WHERE release = ? "
        "UNION SELECT DISTINCT layer FROM activations WHERE release = ?",
        [release, release]).column("layer").to_pylist()
    return [layer for layer in layers if layer in set(have)]


def n_tokens(lake: Lake, release: str, layer: int) -> int | None:
    """N of ``activation_sets`` for one layer (all tokens seen), or None without a row."""
    r = lake.query("SELECT n_tokens FROM activation_sets WHERE release = ? AND layer = ?",
                   [release, int(layer)])
    return None if r.num_rows == 0 else int(r.column("n_tokens")[0].as_py())


def load_activity(lake: Lake, release: str, layer: int,
                  tokens: tuple[int | None, int | None] = (None, None)) -> Activity:
    """Read one layer's active entries (value > 0) and check them against the SAE and N.

    ``tokens = (lo, hi)`` reads only the token ids lo <= token_id < hi (None: unbounded), one
    block of a sharded layer (``token_blocks``)."""
    width = sae_width(lake, release, layer)
    lo, hi = tokens
    rng = "".join([" AND token_id >= ?" if lo is not None else "", " AND token_id < ?" if hi is not None else ""])
    con = lake.connect()
    try:
        cols = con.execute(
            "SELECT token_id, feature, value FROM activations "
            f"WHERE release = ? AND layer = ? AND value > 0{rng}",
            [release, int(layer), *(int(b) for b in tokens if b is not None)]).fetchnumpy()
    finally:
        con.close()
    tok = np.ascontiguousarray(cols["token_id"], dtype=np.int64)
    feat = np.ascontiguousarray(cols["feature"], dtype=np.int32)
    val = np.ascontiguousarray(cols["value"], dtype=np.float32)
    where = f"activations of release {release!r} layer {layer}"
    if feat.size and (int(feat.min()) < 0 or int(feat.max()) >= width):
        bad = int(feat.max()) if int(feat.max()) >= width else int(feat.min())
        raise BadInput(f"{where}: feature {bad} is outside the SAE's d_sae {width}")
    if tok.size and int(tok.min()) < 0:
        raise BadInput(f"{where}: negative token_id {int(tok.min())}")
    n = n_tokens(lake, release, layer)
    return Activity(tok, feat, val, width, n)


def token_blocks(lake: Lake, release: str, layer: int) -> list[tuple[int | None, int | None]]:
    """The token-id ranges [lo, hi) a step reads one layer's activations in: one per ``shard``
    partition (``saew harvest --shard-tokens``), in ascending token order, together covering
    every token id (the first unbounded below, the last above). A single block (None, None)
    when the layer has one shard, or shards whose token ranges overlap."""
    r = lake.query("SELECT shard, min(token_id) AS lo, max(token_id) AS hi FROM activations "
                   "WHERE release = ? AND layer = ? GROUP BY shard ORDER BY lo",
                   [release, int(layer)]).to_pydict()
    lo, hi = r["lo"], r["hi"]
    if len(lo) < 2 or any(lo[i + 1] <= hi[i] for i in range(len(lo) - 1)):
        return [(None, None)]
    cuts = [None, *lo[1:], None]
    return list(zip(cuts[:-1], cuts[1:]))
