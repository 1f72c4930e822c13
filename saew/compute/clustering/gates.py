"""Evidence gates: a cluster, and each of its members, must beat what chance gives in that layer.

Both gates work in the ORIGINAL space, on the unit vectors u of the layer's distinct vectors
(what the clusterers see), whatever algorithm proposed the clusters.

Member gate, then cluster gate (``gate``; the measurements behind the order are in its
docstring).

Cluster gate (``null_quantile`` q; 0 = off). Cluster c (after the member gate) is kept iff
n_c >= the pass's minimum size and coherence_c > null_q(n_c); the rest become noise. Three
nulls (``null``), each the larger of its own and the one before, for groups of n_c distinct
features of the layer:

- ``random``: the coherence (``quality.coherence_from_sums``) of uniformly random groups.
  Random groups are windows of random permutations: with the prefix sums P_t of the rows of
  u[perm], rows perm[b..b+s) sum to P_{b+s} - P_b, so one permutation serves every size at
  once (disjoint windows b = 0, s, 2s, ... when they give enough groups, else overlapping ones
  at a smaller stride: each still a uniformly random group, neighbours correlated). Up to
  ``null_draws`` groups per size, from enough permutations for disjoint windows of sizes up
  to NULL_DISJOINT within a budget of NULL_WORK row-coordinate sums per layer (at least
  NULL_PERMUTATIONS). The group of every distinct vector has exactly the
  layer's mean pairwise cosine, so one cluster of everything can never pass.
- ``search`` (``null="search"``): a clusterer does not propose random groups but
  the most coherent ones it can find, so clusters found in data without any structure beat
  the random null easily (measured on 2,304 isotropic Gaussian vectors in 64-D: UMAP +
  HDBSCAN + refinement proposes 149 clusters, 124 pass the member gate and the random null,
  30 this null). This null is
  the coherence of the tightest groups of each size in a structureless copy of the layer:
  the surrogate permutes every coordinate independently over the rows (per-coordinate
  marginals, hence the mean direction, kept; dependence between coordinates, hence every
  cluster, destroyed) and re-normalises the rows; a group is a seed row with its s - 1 nearest
  neighbours (cosine), for SEARCH_SEEDS random seeds. Sizes above SEARCH_MAX_SIZE keep the
  value at that size (the null falls with size, so this is conservative). The threshold is
  the larger of the random and search nulls.
- ``greedy`` (``null="greedy"``, the default): ``search``, and up to GREEDY_POOL_LARGE members
  the larger of its ball null and the best greedily grown group (``greedy_quantiles``: in the
  same surrogate, a group grown row by row among a seed's nearest rows by summed cosine to
  the members, the way a clusterer grows a tight group in a neighbourhood; the null is the
  best such group, not a quantile: a clusterer reports the best groups of the whole layer).
  Sizes up to GREEDY_POOL: pools of GREEDY_POOL rows from every row as a seed (up to
  GREEDY_SEEDS); larger sizes: pools of GREEDY_POOL_LARGE rows from GREEDY_SEEDS_LARGE seeds
  (Leiden's chance communities in isotropic rows have 29-78 members: with the small pool
  alone 1-7 passed at six shapes; with both, 0 at seven of nine and 1 at 64 x 512 and at
  32 x 256; a large pool for the small sizes too costs planted power, as pool 256 did in
  96-D). Chosen for specificity, measured with UMAP + HDBSCAN + refinement on isotropic
  Gaussian decoder rows (clusters reported,
  ``search`` -> ``greedy``): 64-D x 2,304 rows 23 -> 1, 128 x 1,500 9 -> 0, 256 x 2,048
  3 -> 0, 128 x 1,024 8 -> 0, 64 x 512 4 -> 0, 32 x 256 2 -> 0, 512 x 1,500 (three seeds)
  0-1 -> 0 (the 1: a 12-member group of coherence 0.055 against a ball null of 0.044, on some
  CPUs only), 576 x 2,304 1 -> 0, 768 x 4,096 0 -> 0. Planted clusters come back as well as
  with ``search`` at the dimension of the sentence embeddings the weak-separation regimes
  model (384-D: adjusted Rand 0.86-1.00 in every regime, equal to ``search``). In 96-D the
  ``all`` regime's smallest clusters (11-28 members, coherence 0.50-0.54 over a background of
  0.35) are no more coherent than groups a local search finds in the surrogate, and this null
  rejects several (adjusted Rand per layer: ``all`` 0.71-0.83, against 0.82-0.90 with
  ``search``; ``shared`` 0.58-0.93 against 0.91-0.93; ``outlier`` 0.61-0.64 against
  0.63-0.76): there a cluster of that size cannot be told from chance by its coherence.
  It costs about 0.35 s per 2,304 x 576 layer (about 5 s at 32,768 x 768).

Member gate (``member_quantile`` q_m; 0 = off). For a cluster c with n_c members and sum S_c = sum_{i in c} u_i, member i's affinity
a_i = (u_i . S_c - 1) / (n_c - 1) (its mean cosine to the other members) must exceed t_c, the
q_m-quantile of b_j = u_j . S_c / n_c over a seeded sample of up to MEMBER_SAMPLE features j of
the layer that are not members of c (a random feature's mean cosine to the members). Members
that fail become noise. This is
what keeps unclustered (background) features out of the clusters UMAP and Leiden pull them
into. One pass for all clusters: one [sample x clusters] matrix product.

Both nulls are computed at sizes on a geometric grid (ratio GRID_RATIO) from 2 to the layer's
size, once per layer and seed; between grid sizes they are interpolated linearly in log size.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from saew.compute.clustering.config import NOISE
from saew.compute.clustering.quality import cluster_sums, coherence_from_sums

NULLS = ("random", "search", "greedy")
NULL_PERMUTATIONS = 4
NULL_WORK = 50_000_000
NULL_DISJOINT = 64
MEMBER_SAMPLE = 1000
SEARCH_SEEDS = 256
SEARCH_MAX_SIZE = 512
GREEDY_POOL = 32          # greedy groups grow among each seed's nearest rows, up to this size
GREEDY_SEEDS = 2048       # ... from every row as a seed, up to this many
GREEDY_POOL_LARGE = 256   # sizes GREEDY_POOL + 1 .. this: groups grown among 256 nearest rows
GREEDY_SEEDS_LARGE = 128  # ... from this many seeds (512: the same null within 2%, 8x the time)
GRID_RATIO = 1.25


@dataclass(frozen=True)
class CoherenceNull:
    sizes: np.ndarray       # int64 grid of group sizes, 2..n
    random: np.ndarray      # float64: q-quantile of random groups' coherence at each size
    search: np.ndarray | None = None   # q-quantile of the surrogate's tightest groups

    @property
    def quantile(self) -> np.ndarray:
        return self.random if self.search is None else np.maximum(self.random, self.search)

    def threshold(self, n: np.ndarray) -> np.ndarray:
        """The null at group sizes ``n`` (log-linear interpolation on the grid)."""
        if len(self.sizes) == 1:
            return np.full(np.shape(n), self.quantile[0])
        return np.interp(np.log(np.maximum(n, 2)), np.log(self.sizes), self.quantile)


def size_grid(n: int) -> np.ndarray:
    """Group sizes 2 .. n on a geometric grid of ratio GRID_RATIO (n included)."""
    if n <= 2:
        return np.array([2], np.int64)
    k = int(np.ceil(np.log(n / 2.0) / np.log(GRID_RATIO))) + 1
    return np.unique(np.append(np.round(np.geomspace(2, n, k)).astype(np.int64), n))


def coherence_null(u: np.ndarray, q: float, draws: int, seed: int, null: str = "greedy"
                   ) -> CoherenceNull:
    """The nulls of the cluster gate at every grid size (module docstring)."""
    sizes = size_grid(u.shape[0])
    rng = np.random.default_rng(seed)
    rand = random_group_quantiles(u, sizes, q, draws, rng)
    if null == "random":
        return CoherenceNull(sizes, rand, None)
    ball = search_quantiles(u, sizes, q, rng)
    if null == "greedy":
        small = greedy_quantiles(u, sizes, 1.0, rng)                   # the best groups
        large = greedy_quantiles(u, sizes, 1.0, rng, GREEDY_POOL_LARGE, GREEDY_SEEDS_LARGE)
        ball = np.maximum(ball, np.where(sizes <= GREEDY_POOL, small, large))
    return CoherenceNull(sizes, rand, ball)


def random_group_quantiles(u: np.ndarray, sizes: np.ndarray, q: float, draws: int,
                           rng: np.random.Generator) -> np.ndarray:
    """q-quantile of the coherence of uniformly random groups of each size (module docstring).

    Permutations: enough for ``draws`` disjoint windows of every size up to NULL_DISJOINT,
    within a budget of NULL_WORK row-coordinate sums (at least NULL_PERMUTATIONS).
    """
    n, d = u.shape
    n_perm = int(np.clip(np.ceil(draws * min(n, NULL_DISJOINT) / n), NULL_PERMUTATIONS,
                         max(NULL_PERMUTATIONS, NULL_WORK // max(n * d, 1))))
    per = -(-draws // n_perm)
    vals: list[list[np.ndarray]] = [[] for _ in sizes]
    prefix = np.zeros((n + 1, d))
    for _ in range(n_perm):
        np.cumsum(u[rng.permutation(n)], axis=0, dtype=np.float64, out=prefix[1:])
        for k, s in enumerate(sizes):
            s = int(s)
            stride = s if (n // s) * n_perm >= draws else max(1, (n - s) * n_perm // draws)
            b = np.arange(0, n - s + 1, stride)[:per]
            vals[k].append(coherence_from_sums(np.full(len(b), float(s)), prefix[b + s] - prefix[b]))
    return np.array([np.quantile(np.concatenate(v), q) for v in vals])


def search_quantiles(u: np.ndarray, sizes: np.ndarray, q: float, rng: np.random.Generator
                     ) -> np.ndarray:
    """q-quantile of the coherence of the tightest groups (a seed and its s - 1 nearest
    neighbours) in the coordinate-permuted surrogate of ``u``, at each size (module docstring)."""
    n = u.shape[0]
    x = rng.permuted(np.asarray(u, np.float32), axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    top_n = min(n, SEARCH_MAX_SIZE)
    at = np.minimum(sizes, top_n)
    seeds = rng.choice(n, min(SEARCH_SEEDS, n), replace=False)
    vals = []
    for s in range(0, len(seeds), 32):
        sim = x[seeds[s:s + 32]] @ x.T
        sim[np.arange(sim.shape[0]), seeds[s:s + 32]] = np.inf          # the seed itself first
        top = np.argpartition(-sim, top_n - 1, axis=1)[:, :top_n]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), axis=1), 1)
        cuts = np.unique(at)                                       # group sums at the grid sizes:
        starts = np.concatenate([[0], cuts[:-1]])
        seg = np.add.reduceat(x[top[:, :cuts[-1]]], starts, axis=1, dtype=np.float64)
        sums = np.cumsum(seg, axis=1)[:, np.searchsorted(cuts, at), :]     # [seeds, sizes, d]
        vals.append(coherence_from_sums(at.astype(np.float64), sums))
    return np.quantile(np.concatenate(vals), q, axis=0)


def greedy_quantiles(u: np.ndarray, sizes: np.ndarray, q: float, rng: np.random.Generator,
                     pool: int = GREEDY_POOL, n_seeds: int = GREEDY_SEEDS) -> np.ndarray:
    """q-quantile (1: the maximum) of the coherence of greedily grown groups in a
    coordinate-permuted surrogate of ``u``, at each size up to ``pool`` (-inf above: the
    ball null alone there).

    From each of min(n, ``n_seeds``) seeds, the group grows one row at a time, always by the
    row of the seed's ``pool`` nearest neighbours (the seed first) with the largest summed
    cosine to the members so far (greedy densest subgraph): a search for coherent groups, as a
    clusterer's, where the ball (``search_quantiles``) only takes a seed's neighbours.
    Coherence from running sums: sum over member pairs of cosines, so no group is ever
    re-summed."""
    n = u.shape[0]
    out = np.full(len(sizes), -np.inf)
    top_s = int(min(n, pool))
    if top_s < 2:
        return out
    x = rng.permuted(np.asarray(u, np.float32), axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    seeds = rng.choice(n, min(n_seeds, n), replace=False)
    vals = np.empty((top_s + 1, len(seeds)))
    for b in range(0, len(seeds), 128):
        sd = seeds[b:b + 128]
        k = np.arange(len(sd))
        sim = x[sd] @ x.T
        sim[k, sd] = np.inf                                           # the seed: pool position 0
        near = np.argpartition(-sim, top_s - 1, axis=1)[:, :top_s]
        near = np.take_along_axis(near, np.argsort(-np.take_along_axis(sim, near, 1), axis=1), 1)
        xs = x[near]                                                  # [seeds, pool, d]
        g = np.matmul(xs, xs.transpose(0, 2, 1)).astype(np.float64)  # cosines within each pool
        member = np.zeros((len(sd), top_s), bool)
        member[:, 0] = True
        score, pairs = g[:, 0].copy(), np.zeros(len(sd))              # cos to members; pair sum
        for size in range(2, top_s + 1):
            j = np.argmax(np.where(member, -np.inf, score), axis=1)
            pairs += score[k, j]
            member[k, j] = True
            score += g[k, j]
            vals[size, b:b + 128] = pairs / (size * (size - 1) / 2)
    small = sizes <= top_s
    out[small] = np.quantile(vals[sizes[small].astype(int)], q, axis=1)
    return out


def member_gate(u: np.ndarray, labels: np.ndarray, q: float, seed: int) -> np.ndarray:
    """Labels with the members that fail the member gate set to noise (module docstring)."""
    ids, n, sums = cluster_sums(u, labels)
    if not len(ids):
        return labels
    rng = np.random.default_rng(seed)
    samp = rng.choice(len(u), min(MEMBER_SAMPLE, len(u)), replace=False)
    b = u[samp].astype(np.float32) @ (sums / n[:, None]).astype(np.float32).T     # [sample, K]
    own = labels[samp] >= 0
    b[np.flatnonzero(own), np.searchsorted(ids, labels[samp][own])] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = np.nanquantile(b, q, axis=0)          # NaN (no non-member sampled): nobody passes
    mem = np.flatnonzero(labels >= 0)
    pos = np.searchsorted(ids, labels[mem])
    dot = np.empty(len(mem))
    for s in range(0, len(mem), 8192):
        dot[s:s + 8192] = np.einsum("ij,ij->i", u[mem[s:s + 8192]].astype(np.float64), sums[pos[s:s + 8192]])
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (dot - 1.0) / (n[pos] - 1.0)
    out = labels.copy()
    out[mem[~(a > t[pos])]] = NOISE
    return out


def cluster_gate(u: np.ndarray, labels: np.ndarray, null: CoherenceNull, min_size: int
                 ) -> np.ndarray:
    """Labels with the clusters that fail the cluster gate (or are below ``min_size``) set to noise."""
    ids, n, sums = cluster_sums(u, labels)
    if not len(ids):
        return labels
    ok = (n >= min_size) & (coherence_from_sums(n, sums) > null.threshold(n) + 1e-12)
    out = labels.copy()
    out[(labels >= 0) & ~np.isin(labels, ids[ok])] = NOISE
    return out


def min_size_gate(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels with the clusters of fewer than ``min_size`` members set to noise."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    out = labels.copy()
    out[np.isin(labels, ids[counts < min_size])] = NOISE
    return out


def gate(u: np.ndarray, labels: np.ndarray, null: CoherenceNull | None, member_quantile: float,
         min_size: int, seed: int) -> np.ndarray:
    """The member gate, then the cluster gate with the minimum size (``null`` None or
    ``member_quantile`` 0 turns a gate off).

    This order (prune, then test the pruned cluster) recovers planted clusters best, because
    a real cluster that has pulled in background rows is judged on its members (planted
    ``all`` regime: ARI 0.92 vs 0.81 testing first); its cost is that pruning raises the
    coherence of groups found in noise too (2,304 isotropic 64-D vectors: 30 clusters pass vs
    12; 1,500 in 512-D: none either way with hdbscan, 9 vs 0 Leiden communities, with the
    ``search`` null; with ``greedy``, 0 Leiden communities in this order).
    """
    if member_quantile > 0:
        labels = member_gate(u, labels, member_quantile, seed)
    return cluster_gate(u, labels, null, min_size) if null is not None else min_size_gate(labels, min_size)
