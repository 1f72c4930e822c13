"""Planted releases: SAEs whose decoder rows carry known clusters, with known events between layers.

The regimes are the ones where UMAP + HDBSCAN with the pre-issue-14 defaults fails (issue 14,
item 6), one failure mode each, and ``all`` combines them:

- ``separated``: equal clusters around independent random directions, 15% background; the
  easy control that every clusterer should get right.
- ``shared``: weak separation on top of a direction shared by every row, as sentence
  embeddings of same-format descriptions have (mean cosine between unrelated rows ~0.35,
  within a cluster ~0.55; the smollm2 demo's text space: 0.28-0.36 and 0.52-0.57).
- ``outlier``: weaker still (within ~0.5), 35% background, and one compact group far from
  everything else (within-group cosine ~0.95, no shared direction): HDBSCAN's tree splits it
  off at the root and excess of mass returns {that group} and {everything else}.
- ``sizes``: cluster sizes from a Zipf law (largest ~10x the smallest).
- ``background``: 45% of the rows belong to no cluster (the shared direction only).
- ``all``: shared direction (within ~0.53), outlier group, varied sizes and 35% background
  together (the pre-issue-14 defaults: in 96-D 2 clusters at 2 of its first 3 layers; in the
  default 384-D 33-39 clusters for 15, adjusted Rand 0.37-0.44).

Row model (before unit-normalising): member of cluster k: sqrt(a2) s + sqrt(b2) c_k + sqrt(n2) g,
background: sqrt(a2) s + sqrt(b2 + n2) g, outlier: c_o + sqrt(0.05) g, with s the layer's shared
direction, c_k a random unit centre and g ~ N(0, I / d_in), so every row has about the same norm.

Events between layer l and l+1 (every pair): one split (a cluster of >= 30 members goes 60/40
to two clusters), one merge (two clusters into one), one vanish (a cluster's members become
background), one birth (as many background rows become a new cluster), every other cluster
survives (the outlier group always does). The planted match is a uniformly random permutation
``perm[l]``: feature i of layer l is feature perm[l][i] of layer l+1, and the labels of layer
l+1 are the events applied to the labels of the pre-images. Cluster counts stay constant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RELEASE = "planted"
PLANTED_SPACE = "planted"           # the cluster space the planted labels are ingested as
PLANTED_METHOD = "planted"          # the match method of the planted permutations


@dataclass(frozen=True)
class Regime:
    n_clusters: int = 14
    background: float = 0.15        # share of rows in no cluster
    shared: float = 0.0             # a2: weight of the shared direction
    signal: float = 0.5             # b2: weight of the cluster centre
    noise: float = 0.5              # n2: weight of the isotropic noise
    outlier: int = 0                # size of the compact outlier group (0: none)
    zipf: bool = False              # cluster sizes ~ 1 / rank instead of equal


REGIMES: dict[str, Regime] = {
    "separated": Regime(),
    "shared": Regime(shared=0.35, signal=0.2, noise=0.45),
    "outlier": Regime(shared=0.35, signal=0.15, noise=0.5, outlier=20, background=0.35),
    "sizes": Regime(zipf=True),
    "background": Regime(n_clusters=10, background=0.45),
    "all": Regime(shared=0.35, signal=0.18, noise=0.47, outlier=20, zipf=True, background=0.35),
}


@dataclass(frozen=True)
class Planted:
    regime: str
    labels: dict[int, np.ndarray]             # layer -> int32 [d_sae], -1 background
    w_dec: dict[int, np.ndarray]              # layer -> float32 [d_sae, d_in]
    perms: dict[int, np.ndarray]              # src layer -> int64 [d_sae], perm[i] = j at src + 1
    events: dict[int, dict[str, list]] = field(default_factory=dict)   # src layer -> event -> clusters

    @property
    def layers(self) -> list[int]:
        return sorted(self.labels)


def _sizes(r: Regime, n: int, rng: np.random.Generator) -> np.ndarray:
    clustered = int(round(n * (1.0 - r.background))) - r.outlier
    if r.zipf:
        w = 1.0 / np.arange(1, r.n_clusters + 1)
        s = np.maximum(14, np.floor(clustered * w / w.sum())).astype(int)
    else:
        s = np.full(r.n_clusters, clustered // r.n_clusters)
    return rng.permutation(s)


def _first_labels(r: Regime, n: int, rng: np.random.Generator) -> np.ndarray:
    sizes = _sizes(r, n, rng)
    lab = np.full(n, -1, np.int32)
    members = rng.permutation(n)
    at = 0
    for k, s in enumerate(sizes):
        lab[members[at:at + s]] = k
        at += s
    if r.outlier:
        lab[members[at:at + r.outlier]] = len(sizes)       # the outlier group is the last cluster
    return lab


def _next_labels(lab: np.ndarray, outlier: int | None, rng: np.random.Generator
                 ) -> tuple[np.ndarray, dict[str, list]]:
    """Labels of the pre-images' images at the next layer (same order as ``lab``), 0.. dense."""
    ids, sizes = np.unique(lab[lab >= 0], return_counts=True)
    size = dict(zip(ids.tolist(), sizes.tolist()))
    free = [k for k in ids.tolist() if k != outlier]
    rng.shuffle(free)
    split = next(k for k in free if size[k] >= 30)
    free.remove(split)
    merge = free[:2]
    vanish = free[2]
    survive = free[3:] + ([outlier] if outlier is not None else [])
    new = np.full(len(lab), -1, np.int32)
    nxt = iter(range(len(ids) + 2))
    for k in survive:
        new[lab == k] = next(nxt)
    m = rng.permutation(np.flatnonzero(lab == split))
    cut = int(round(0.6 * len(m)))
    new[m[:cut]], new[m[cut:]] = next(nxt), next(nxt)
    new[np.isin(lab, merge)] = next(nxt)
    bg = np.flatnonzero(lab == -1)
    born = rng.choice(bg, size=min(size[vanish], len(bg)), replace=False)
    new[born] = next(nxt)
    events = {"survive": survive, "split": [split], "merge": merge, "vanish": [vanish],
              "birth": [int(new[born[0]])]}
    return new, events


def _vectors(r: Regime, lab: np.ndarray, outlier: int | None, d_in: int,
             rng: np.random.Generator) -> np.ndarray:
    n = len(lab)
    k = int(lab.max()) + 1
    centres = rng.standard_normal((k, d_in))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    s = rng.standard_normal(d_in)
    s /= np.linalg.norm(s)
    g = rng.standard_normal((n, d_in)) / np.sqrt(d_in)
    member = lab >= 0
    x = np.sqrt(r.shared) * s + np.where(member[:, None], np.sqrt(r.noise), np.sqrt(r.noise + r.signal)) * g
    x[member] += np.sqrt(r.signal) * centres[lab[member]]
    if outlier is not None:
        o = lab == outlier
        x[o] = centres[outlier] + np.sqrt(0.05) * g[o]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted_release(regime: str | Regime = "all", n_layers: int = 4, d_sae: int = 768,
                    d_in: int = 384, seed: int = 0) -> Planted:
    """A planted release: labels, decoder rows and permutations for ``n_layers`` layers
    (``regime``: a name of REGIMES or a Regime). ``d_in`` 384 is the dimension of the sentence
    embeddings the weak-separation regimes model (all-MiniLM-L6-v2); in 96-D the smallest
    clusters of ``all`` are no more coherent than what a search finds by chance
    (``saew.compute.clustering.gates``, ``greedy``)."""
    r = REGIMES[regime] if isinstance(regime, str) else regime
    rng = np.random.default_rng(seed)
    labels = {0: _first_labels(r, d_sae, rng)}
    outlier = {0: int(labels[0].max()) if r.outlier else None}
    perms, events = {}, {}
    for L in range(n_layers - 1):
        new, ev = _next_labels(labels[L], outlier[L], rng)
        perm = rng.permutation(d_sae)
        nxt = np.empty(d_sae, np.int32)
        nxt[perm] = new
        labels[L + 1], perms[L], events[L] = nxt, perm.astype(np.int64), ev
        outlier[L + 1] = int(new[labels[L] == outlier[L]][0]) if r.outlier else None
    w_dec = {L: _vectors(r, labels[L], outlier[L], d_in, rng) for L in labels}
    return Planted(regime if isinstance(regime, str) else repr(regime), labels, w_dec, perms, events)


def write_planted(root: Path, p: Planted, seed: int = 0) -> dict[str, list[Path]]:
    """SAELens folders (one per layer, hook ``blocks.L.hook_resid_post``), label ``.npy`` files
    and ``P_LL_MM.npy`` permutations under ``root``; returns the paths by kind."""
    from saew.sae.params import SAEParams
    from tests.formats import write_labels, write_saelens

    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {"sae": [], "labels": [], "perms": []}
    for L in p.layers:
        w = p.w_dec[L]
        n, d = w.shape
        sae = SAEParams(w_enc=(w.T + 0.05 * rng.standard_normal((d, n))).astype(np.float32),
                        b_enc=np.zeros(n, np.float32), w_dec=w, b_dec=np.zeros(d, np.float32))
        out["sae"].append(write_saelens(root / f"sae_{L:02d}", sae, hook=f"blocks.{L}.hook_resid_post",
                                        model="planted-model"))
        out["labels"].append(write_labels(root / f"labels_{L:02d}.npy", p.labels[L]))
    for L, perm in p.perms.items():
        out["perms"].append(write_labels(root / f"P_{L:02d}_{L + 1:02d}.npy", perm))
    return out


def ingest_planted(run, root: Path, p: Planted, release: str = RELEASE) -> None:
    """Write ``p`` under ``root`` and ingest it through the CLI runner ``run(*args)``: the SAEs,
    the planted labels as cluster space ``planted`` and the permutations as matches
    ``decoder/planted``."""
    paths = write_planted(root, p)
    steps = [("ingest", "sae", *paths["sae"], "--release", release)]
    steps += [("ingest", "clusters", f, "--release", release, "--layer", str(L), "--space", PLANTED_SPACE)
              for L, f in zip(p.layers, paths["labels"])]
    steps += [("ingest", "matches", f, "--release", release, "--space", "decoder",
               "--method", PLANTED_METHOD) for f in paths["perms"]]
    for args in steps:
        code, out, err = run(*args)
        assert code == 0, f"{' '.join(map(str, args))}: {out}{err}"
