"""Token shards of a harvest: the unit of work that writes its own ``activations`` partitions.

Shard s of a run holds the tokens with token_id in [s S, (s + 1) S), S = ``--shard-tokens``
(token ids run 0.. in corpus order). ``ShardBuffer`` collects each layer's sparse codes
(token_id, feature, value) of the shards under way, and hands a shard over as soon as the run
has passed its last token, so memory holds at most one shard of every layer (plus the batch
that straddles a boundary), never a whole layer. ``write_shard`` writes one shard of every
layer, ``activations/release=R/layer=L/shard=s``; a reader of the table sees the shards as one
layer (the ``shard`` column is a Hive partition below ``layer``).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

DEFAULT_SHARD_TOKENS = 1_000_000

Piece = tuple[np.ndarray, np.ndarray, np.ndarray]   # (token_id int64, feature int32, value float32)


def shard_unit(shard: int) -> str:
    """The unit name of one token shard (``runs.units``)."""
    return f"shard={int(shard)}"


class ShardBuffer:
    """Per shard and layer, the sparse code pieces of the tokens run so far."""

    def __init__(self, layers: list[int], shard_tokens: int):
        self.layers = [int(L) for L in layers]
        self.size = int(shard_tokens)
        self._pieces: dict[int, dict[int, list[Piece]]] = {}
        self._popped = 0                      # shards 0 .. _popped - 1 were handed over

    def add(self, layer: int, piece: Piece) -> None:
        """One batch's codes of one layer, sorted by token_id (``codes.sparse_rows``): split at
        the shard boundaries it crosses."""
        tid = piece[0]
        if not len(tid):
            return
        first, last = int(tid[0]) // self.size, int(tid[-1]) // self.size
        cuts = np.searchsorted(tid, np.arange(first + 1, last + 1, dtype=np.int64) * self.size)
        bounds = [0, *cuts.tolist(), len(tid)]
        for s, (a, b) in zip(range(first, last + 1), zip(bounds[:-1], bounds[1:])):
            if b > a:
                self._pieces.setdefault(s, {}).setdefault(int(layer), []).append(
                    tuple(x[a:b] for x in piece))

    def complete(self, next_token: int) -> list[int]:
        """The shards every token of which has been run (token ids < ``next_token``), ascending;
        call ``pop`` on each. A shard without any activation is complete too."""
        return list(range(self._popped, int(next_token) // self.size))

    def remaining(self, next_token: int) -> list[int]:
        """At the end of the run: every shard not popped yet that holds a token run."""
        return list(range(self._popped, -(-int(next_token) // self.size)))

    def pop(self, shard: int) -> dict[int, list[Piece]]:
        self._popped = int(shard) + 1
        got = self._pieces.pop(int(shard), {})
        return {L: got.get(L, []) for L in self.layers}


def columns(pieces: list[Piece]) -> dict[str, pa.ChunkedArray]:
    """The ``activations`` columns of a shard's pieces, chunked (no concatenated copy)."""
    types = (pa.int64(), pa.int32(), pa.float32())
    names = ("token_id", "feature", "value")
    return {n: pa.chunked_array([pa.array(p[i]) for p in pieces], type=t)
            for i, (n, t) in enumerate(zip(names, types))}


def write_shard(lake, release: str, shard: int, by_layer: dict[int, list[Piece]]) -> int:
    """Write shard ``shard`` of every layer (an empty partition where a layer has no codes
    there); the number of non-zero codes written."""
    n = 0
    for L, pieces in by_layer.items():
        lake.write("activations", columns(pieces), release=release, layer=int(L), shard=int(shard))
        n += sum(len(p[0]) for p in pieces)
    return n
