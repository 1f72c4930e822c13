"""Activation examples per feature (lake table ``examples``): the top K and a few quantile samples.

The selection streams over a harvest's batches (``ExampleSelector.update`` per batch of sparse
codes), holding at most K top candidates and R reservoir candidates per feature, never the run:

- ``top``: the K largest activations of the feature over the whole run, ordered by value
  descending, ties by token_id ascending; rank 0 is the strongest.
- ``quantile``: Q samples spread over the feature's non-zero activations. A uniform sample
  without replacement of up to R of them is kept per feature (the R smallest hash priorities
  h(token_id, feature), ties by token_id, so it does not depend on batching); with the m sampled values sorted
  ascending, sample j = 0..Q-1 is the one at index floor((j + 1/2) m / Q) (the middle of the
  j-th of Q equal-count bins; as SAEDashboard's quantile groups), duplicates dropped. Exact
  quantiles of all the feature's activations whenever it fired on at most R tokens.

Each example is a window of tokens around its peak token: up to ``before`` tokens before and
``after`` tokens after, within the same document; ``acts`` is the feature's activation on each
window token (0 where inactive, from the run's sparse codes), ``peak`` the index of the peak token
in the window, ``value`` the activation there, ``token_id`` the peak token.
All selections are vectorised (one two-key lexsort per merge, over all features), no loop over
features.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

DEFAULT_EXAMPLES = 20
QUANTILES = 5
RESERVOIR = 64
BEFORE, AFTER = 8, 3

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def priority(token_id: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random uint32 per (token_id, feature) (the high half of splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        x = token_id.astype(np.uint64) * _M1 + feature.astype(np.uint64) * _M2
        x ^= x >> np.uint64(30)
        x *= _M2
        x ^= x >> np.uint64(27)
        x *= _M3
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(32)).astype(np.uint32)


def group_rank(groups: np.ndarray) -> np.ndarray:
    """For a sorted array of group labels, each element's index within its group."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def sortable32(key: np.ndarray) -> np.ndarray:
    """uint32 codes ordered as ``key`` (float32: the IEEE order trick; uint32 as is)."""
    if key.dtype == np.uint32:
        return key
    b = key.astype(np.float32).view(np.uint32)
    return np.where(b >> np.uint32(31), ~b, b | np.uint32(0x80000000))


def packed(groups: np.ndarray, key: np.ndarray) -> np.ndarray:
    """uint64 codes ordered as (group, key): group << 32 | sortable32(key)."""
    return (groups.astype(np.uint64) << np.uint64(32)) | sortable32(key).astype(np.uint64)


def keep_best(groups: np.ndarray, key: np.ndarray, tiebreak: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first k elements of every group ordered by (key, tiebreak) ascending,
    returned in (group, key, tiebreak) order. One lexsort over two int keys: (group << 32 | key)
    and the tiebreak."""
    order = np.lexsort((tiebreak, packed(groups, key)))
    return order[group_rank(groups[order]) < k]


@dataclass
class _Pool:
    feature: np.ndarray
    token_id: np.ndarray
    value: np.ndarray
    key: np.ndarray  # the ascending selection key: -value (top) or the hash priority (reservoir)

    @classmethod
    def empty(cls, key_dtype) -> "_Pool":
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   np.zeros(0, key_dtype))


class ExampleSelector:
    """The running top-K and reservoir of one layer's features over a stream of sparse codes."""

    min_buffer = 1 << 16  # candidates buffered before a merge (at least the pools' size)

    def __init__(self, d_sae: int, k: int = DEFAULT_EXAMPLES, reservoir: int = RESERVOIR):
        self.d_sae, self.k, self.r = int(d_sae), int(k), int(reservoir)
        self._top = _Pool.empty(np.float32)
        self._res = _Pool.empty(np.uint32)
        self._top_cut = np.full(self.d_sae, np.inf, np.float32)      # K-th best -value, once full
        self._res_cut = np.full(self.d_sae, np.iinfo(np.uint32).max, np.uint32)
        self._pending: list[tuple[_Pool, _Pool]] = []  # candidates not merged yet
        self._n_pending = 0

    def update(self, token_id: np.ndarray, feature: np.ndarray, value: np.ndarray) -> None:
        """Add one batch of non-zero codes (token_id, feature, value). Candidates that pass the
        current cut (the K-th best so far; cuts only tighten, so an older cut admits a superset)
        wait in a buffer that is merged once it outgrows the pools: O(candidates log) overall."""
        if self.k == 0 or len(value) == 0:
            return
        neg = (-value).astype(np.float32)
        m = neg <= self._top_cut[feature]
        top = _Pool(feature[m].astype(np.int32), token_id[m].astype(np.int64), value[m].astype(np.float32), neg[m])
        h = priority(token_id, feature)
        m = h <= self._res_cut[feature]
        res = _Pool(feature[m].astype(np.int32), token_id[m].astype(np.int64), value[m].astype(np.float32), h[m])
        self._pending.append((top, res))
        self._n_pending += len(top.value) + len(res.value)
        if self._n_pending >= max(len(self._top.value) + len(self._res.value), self.min_buffer):
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            tops, ress = zip(*self._pending)
            self._top = self._merge([self._top, *tops], self.k, self._top_cut)
            self._res = self._merge([self._res, *ress], self.r, self._res_cut)
            self._pending, self._n_pending = [], 0

    @property
    def top(self) -> _Pool:
        self._flush()
        return self._top

    @property
    def res(self) -> _Pool:
        self._flush()
        return self._res

    @staticmethod
    def _merge(pools: list[_Pool], k: int, cut: np.ndarray) -> _Pool:
        f = np.concatenate([p.feature for p in pools])
        t = np.concatenate([p.token_id for p in pools])
        v = np.concatenate([p.value for p in pools])
        q = np.concatenate([p.key for p in pools])
        keep = keep_best(f, q, t, k)
        out = _Pool(f[keep], t[keep], v[keep], q[keep])
        counts = np.bincount(out.feature, minlength=len(cut))
        full = np.flatnonzero(counts >= k)
        if len(full):  # the k-th (last kept) key of every full feature
            ends = np.cumsum(counts)[full] - 1
            cut[full] = out.key[ends]
        return out

    def selected(self) -> tuple[np.ndarray, ...]:
        """(feature, kind, rank, token_id, value) of every example, top first then quantiles."""
        top = self.top
        rank_top = group_rank(top.feature)
        res = self.res
        order = np.lexsort((res.token_id, packed(res.feature, res.value)))  # by feature, value ascending
        f, t, v = res.feature[order], res.token_id[order], res.value[order]
        if len(f):
            m = np.bincount(f, minlength=self.d_sae)
            starts = np.cumsum(m) - m
            j = np.arange(QUANTILES)
            feats = np.flatnonzero(m)
            pick = starts[feats, None] + ((j + 0.5) * m[feats, None] // QUANTILES).astype(np.int64)
            pick = np.unique(pick.reshape(-1))  # sorted: by feature, then ascending value
            f, t, v = f[pick], t[pick], v[pick]
        rank_q = group_rank(f)
        kind = np.where(np.arange(len(top.feature) + len(f)) < len(top.feature), "top", "quantile")
        return (np.r_[top.feature, f].astype(np.int32), kind, np.r_[rank_top, rank_q].astype(np.int32),
                np.r_[top.token_id, t].astype(np.int64), np.r_[top.value, v].astype(np.float32))


@dataclass(frozen=True)
class TokenTable:
    """The run's tokens, ordered by token_id: ids, document, position, text."""
    token_id: np.ndarray
    doc: np.ndarray
    pos: np.ndarray
    token: pa.Array


def window_ids(token_id: np.ndarray, before: int = BEFORE, after: int = AFTER) -> np.ndarray:
    """The token ids a window around each peak ``token_id`` may hold (ids run 0.. in corpus
    order): sorted, unique, non-negative."""
    ids = (np.asarray(token_id, np.int64)[:, None] + np.arange(-before, after + 1)).reshape(-1)
    return np.unique(ids[ids >= 0])


def example_rows(sel: ExampleSelector, toks: TokenTable | Callable[[np.ndarray], TokenTable],
                 codes: tuple[np.ndarray, np.ndarray, np.ndarray] | Callable,
                 before: int = BEFORE, after: int = AFTER) -> dict:
    """The ``examples`` columns of one layer: the selected examples with their windows.

    ``toks`` is the run's tokens, or a function (sorted token ids) -> the tokens among them
    (e.g. a lake read of only the windows' tokens, ``window_ids``): a window holds the tokens
    at token ids peak - before .. peak + after of the peak's document, consecutive positions.
    ``codes`` is the layer's full sparse (token_id, feature, value), read once for the window acts,
    or a function (token_id, feature) -> the activation there (0 where absent), e.g. a lake read.
    """
    feat, kind, rank, tid, val = sel.selected()
    if callable(toks):
        toks = toks(window_ids(tid, before, after))
    n_tok = len(toks.token_id)
    peak_at = np.searchsorted(toks.token_id, tid)
    offs = np.arange(-before, after + 1)
    cand = peak_at[:, None] + offs[None, :]
    inside = (cand >= 0) & (cand < n_tok)
    c = np.clip(cand, 0, max(n_tok - 1, 0))
    ok = inside & (toks.token_id[c] == tid[:, None] + offs[None, :]) & \
        (toks.doc[c] == toks.doc[peak_at][:, None]) & (toks.pos[c] == toks.pos[peak_at][:, None] + offs[None, :])
    flat = c[ok]
    row_feat = np.broadcast_to(feat[:, None], ok.shape)[ok]
    acts = codes(toks.token_id[flat], row_feat) if callable(codes) else \
        lookup(codes, toks.token_id[flat], row_feat, sel.d_sae)
    offsets = pa.array(np.r_[0, np.cumsum(ok.sum(1))].astype(np.int32))
    return {"feature": feat, "kind": kind, "rank": rank, "token_id": tid,
            "tokens": pa.ListArray.from_arrays(offsets, toks.token.take(pa.array(flat, pa.int64()))),
            "acts": pa.ListArray.from_arrays(offsets, pa.array(acts, pa.float32())),
            "peak": ok[:, :before].sum(1).astype(np.int32), "value": val}


def lookup(codes: tuple[np.ndarray, np.ndarray, np.ndarray], token_id: np.ndarray,
           feature: np.ndarray, d_sae: int) -> np.ndarray:
    """The activation value at each (token_id, feature) in sparse ``codes`` (0 where absent)."""
    ct, cf, cv = codes
    key = ct.astype(np.int64) * d_sae + cf
    if len(key) > 1 and not np.all(key[1:] > key[:-1]):
        o = np.argsort(key, kind="stable")
        key, cv = key[o], cv[o]
    want = token_id.astype(np.int64) * d_sae + feature
    o = np.argsort(want)  # sorted needles search much faster
    i = np.empty(len(want), np.int64)
    i[o] = np.searchsorted(key, want[o])
    i = np.minimum(i, max(len(key) - 1, 0))
    hit = (key[i] == want) if len(key) else np.zeros(len(want), bool)
    return np.where(hit, cv[i] if len(key) else 0, 0).astype(np.float32)
