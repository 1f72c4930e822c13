"""One job of ``saew verify``: its windows through the model, clean and ablated, scored per link.

For link k (source feature s = probes[probe[k]], target j = dst_feature[k]) over the windows
w = 1..n of its source (n = ``n_tokens``), with a_j(w) the destination SAE's activation of j at
the window's target token:

  act_before = mean_w a_j(w) clean,   act_after = mean_w a_j(w) with s switched off
                                        (``intervene``: every real token of the window)
  control_before / control_after: the same means for one control feature c(w) per window,
    drawn uniformly (seeded) among the destination features active (> 0) in the clean run at
    that token, other than the targets of every link of s; NULL when no window has one.

The relative drop (act_before - act_after) / act_before and the confirmation are computed in
dbt (``fct_link_interventions``), where the threshold is a var.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saew.compute.causal.intervene import Point, intervene, make_windows
from saew.compute.causal.links import Job

_CONTROL_TAG = 0x63746c73  # "ctls"


@dataclass(frozen=True)
class MeasureConfig:
    per_link: int = 4        # windows per source feature
    window: int = 16         # tokens per window (ending at the active token)
    batch_size: int = 32     # windows per forward pass (each runs clean and ablated)


@dataclass
class Scores:
    """Per link of a job (same order as ``job.link``)."""
    n_tokens: np.ndarray
    act_before: np.ndarray
    act_after: np.ndarray
    control_before: np.ndarray
    control_after: np.ndarray


def tokenize_windows(model, texts: list[str], window: int) -> list[list[int]]:
    """Token ids of each window text (no special tokens), its last ``window`` ids."""
    enc = model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    out = [list(ids)[-window:] for ids in enc]
    return [ids if ids else [model.pad_id] for ids in out]


def link_rows(row_probe: np.ndarray, link_probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, link) pairs: every window row of each link's probe. ``row_probe`` must be sorted."""
    n_probes = int(max(row_probe.max(initial=-1), link_probe.max(initial=-1))) + 1
    count = np.bincount(row_probe, minlength=n_probes)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    cnt = count[link_probe]
    pair_link = np.repeat(np.arange(len(link_probe)), cnt)
    offs = np.arange(len(pair_link)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return start[link_probe][pair_link] + offs, pair_link


def length_batches(lens: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices in batches of at most ``batch_size`` rows of one length each (no padding, so
    ``intervene`` runs the blocks before the source hook once for clean and ablated)."""
    order = np.lexsort((np.arange(len(lens)), lens))
    cuts = np.flatnonzero(np.diff(lens[order])) + 1
    return [chunk for group in np.split(order, cuts) if len(group)
            for chunk in np.array_split(group, -(-len(group) // batch_size))]


def measure(model, job: Job, row_probe: np.ndarray, seqs: list[list[int]], src: Point, src_sae,
            dst: Point, dst_sae, cfg: MeasureConfig, seed: int, bar=None) -> Scores:
    """Run the job's windows (rows sorted by probe) and score every link (module docstring)."""
    import torch

    n_rows, n_links = len(seqs), len(job.link)
    pair_row, pair_link = link_rows(row_probe, job.probe)
    target = job.dst_feature[pair_link]
    before = np.zeros(len(pair_row), np.float64)
    after = np.zeros(len(pair_row), np.float64)
    c_before = np.full(n_rows, np.nan)
    c_after = np.full(n_rows, np.nan)
    rng = np.random.default_rng(np.random.SeedSequence(
        int(seed), spawn_key=(_CONTROL_TAG, job.src_layer, job.dst_layer, _release_key(job.src_release))))
    feats = torch.from_numpy(job.probes[row_probe].astype(np.int64))
    pos = np.full(n_rows, -1, np.int64)         # a row's index within its batch
    for rows in length_batches(np.asarray([len(s) for s in seqs]), cfg.batch_size):
        pos[rows] = np.arange(len(rows))
        win = make_windows([seqs[r] for r in rows], model.prefix, model.suffix, model.pad_id)
        clean, ablated = (c.numpy().astype(np.float64) for c in
                          intervene(model, win, src, src_sae, feats[torch.from_numpy(rows)], dst, dst_sae))
        sel = np.flatnonzero(np.isin(pair_row, rows))
        at = pos[pair_row[sel]]
        before[sel] = clean[at, target[sel]]
        after[sel] = ablated[at, target[sel]]
        # controls: a random active destination feature per row, never a target of its source
        key = rng.random(clean.shape)
        key[clean <= 0] = np.inf
        key[at, target[sel]] = np.inf
        ctrl = key.argmin(axis=1)
        has = np.isfinite(key[np.arange(len(rows)), ctrl])
        c_before[rows[has]] = clean[has, ctrl[has]]
        c_after[rows[has]] = ablated[has, ctrl[has]]
        if bar is not None:
            bar.update(len(rows))
    n_tok = np.bincount(pair_link, minlength=n_links).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        act_before = np.bincount(pair_link, before, minlength=n_links) / n_tok
        act_after = np.bincount(pair_link, after, minlength=n_links) / n_tok
        n_probes = len(job.probes)
        ok = np.isfinite(c_before)
        n_c = np.bincount(row_probe[ok], minlength=n_probes)
        cb = np.bincount(row_probe[ok], c_before[ok], minlength=n_probes) / n_c
        ca = np.bincount(row_probe[ok], c_after[ok], minlength=n_probes) / n_c
    cb, ca = np.where(n_c > 0, cb, np.nan), np.where(n_c > 0, ca, np.nan)
    return Scores(n_tok, act_before, act_after, cb[job.probe], ca[job.probe])


def _release_key(release: str) -> int:
    """A stable integer for a release name (spawn keys are integers)."""
    import zlib

    return zlib.crc32(release.encode())
