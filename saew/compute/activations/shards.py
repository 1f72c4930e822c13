"""Token shards of a harvest: the unit of work that writes its own ``activations`` partitions.

Shard s of a run holds the tokens with token_id in [s S, (s + 1) S), S = ``--shard-tokens``
(token ids run 0.. in corpus order). ``ShardBuffer`` collects each layer's sparse codes
(token_id, feature, value) of the shards under way, and hands a shard over as soon as the run
has passed its last token, so memory holds at most one shard of every layer (plus the batch
that straddles a boundary), never a whole layer; the shard's token metadata (token_id, doc,
pos, text) is buffered and handed over the same way. ``write_shard`` writes one shard of every
layer, ``activations/release=R/layer=L/shard=s``, and the shard's ``tokens/release=R/shard=s``;
a reader of either table sees the shards as one (``shard`` is a Hive partition column).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

DEFAULT_SHARD_TOKENS = 1_000_000

Piece = tuple[np.ndarray, np.ndarray, np.ndarray]   # (token_id int64, feature int32, value float32)
TokenPiece = tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]   # (token_id, doc, pos, token)


def shard_unit(shard: int) -> str:
    """The unit name of one token shard (``runs.units``)."""
    return f"shard={int(shard)}"


class ShardBuffer:
    """Per shard and layer, the sparse code pieces of the tokens run so far."""

    def __init__(self, layers: list[int], shard_tokens: int):
        self.layers = [int(L) for L in layers]
        self.size = int(shard_tokens)
        self._pieces: dict[int, dict[int, list[Piece]]] = {}
        self._tokens: dict[int, list[TokenPiece]] = {}
        self._popped = 0                      # shards 0 .. _popped - 1 were handed over

    def _split(self, tid: np.ndarray):
        """(shard, start, stop) of the runs of a token_id-sorted array that fall in one shard."""
        first, last = int(tid[0]) // self.size, int(tid[-1]) // self.size
        cuts = np.searchsorted(tid, np.arange(first + 1, last + 1, dtype=np.int64) * self.size)
        bounds = [0, *cuts.tolist(), len(tid)]
        return [(s, a, b) for s, (a, b) in zip(range(first, last + 1), zip(bounds[:-1], bounds[1:])) if b > a]

    def add_tokens(self, token_id: np.ndarray, doc: np.ndarray, pos: np.ndarray, token) -> None:
        """One batch's token metadata (ascending token ids; ``token`` a list of str or a string
        Arrow array), split at the shard boundaries it crosses."""
        if not len(token_id):
            return
        token = token if isinstance(token, pa.Array) else pa.array(token, pa.string())
        for s, a, b in self._split(token_id):
            self._tokens.setdefault(s, []).append((token_id[a:b], doc[a:b], pos[a:b], token[a:b]))

    def add(self, layer: int, piece: Piece) -> None:
        """One batch's codes of one layer, sorted by token_id (``codes.sparse_rows``): split at
        the shard boundaries it crosses."""
        if not len(piece[0]):
            return
        for s, a, b in self._split(piece[0]):
            self._pieces.setdefault(s, {}).setdefault(int(layer), []).append(tuple(x[a:b] for x in piece))

    def complete(self, next_token: int) -> list[int]:
        """The shards every token of which has been run (token ids < ``next_token``), ascending;
        call ``pop`` on each. A shard without any activation is complete too."""
        return list(range(self._popped, int(next_token) // self.size))

    def remaining(self, next_token: int) -> list[int]:
        """At the end of the run: every shard not popped yet that holds a token run."""
        return list(range(self._popped, -(-int(next_token) // self.size)))

    def pop(self, shard: int) -> dict[int, list[Piece]]:
        """The shard's codes per layer; its token metadata then waits for ``pop_tokens``."""
        self._popped = int(shard) + 1
        got = self._pieces.pop(int(shard), {})
        return {L: got.get(L, []) for L in self.layers}

    def pop_tokens(self, shard: int) -> list[TokenPiece]:
        return self._tokens.pop(int(shard), [])


def columns(pieces: list[Piece]) -> dict[str, pa.ChunkedArray]:
    """The ``activations`` columns of a shard's pieces, chunked (no concatenated copy)."""
    types = (pa.int64(), pa.int32(), pa.float32())
    names = ("token_id", "feature", "value")
    return {n: pa.chunked_array([pa.array(p[i]) for p in pieces], type=t)
            for i, (n, t) in enumerate(zip(names, types))}


def token_columns(pieces: list[TokenPiece]) -> dict:
    """The ``tokens`` columns of token metadata pieces, chunked (no concatenated copy)."""
    types = (pa.int64(), pa.int32(), pa.int32())
    cols = {n: pa.chunked_array([pa.array(p[i], type=t) for p in pieces], type=t)
            for i, (n, t) in enumerate(zip(("token_id", "doc", "pos"), types))}
    cols["token"] = pa.chunked_array([p[3] for p in pieces], type=pa.string())
    return cols


def write_shard(lake, release: str, shard: int, by_layer: dict[int, list[Piece]],
                tokens: list[TokenPiece] | None = None) -> int:
    """Write shard ``shard`` of every layer (an empty partition where a layer has no codes
    there) and, given, the shard's ``tokens``; the number of non-zero codes written."""
    if tokens is not None:
        lake.write("tokens", token_columns(tokens), release=release, shard=int(shard))
    n = 0
    for L, pieces in by_layer.items():
        lake.write("activations", columns(pieces), release=release, layer=int(L), shard=int(shard))
        n += sum(len(p[0]) for p in pieces)
    return n
