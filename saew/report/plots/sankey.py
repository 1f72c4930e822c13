"""Sankey diagrams of cluster flows: the layout (where nodes and bands sit) and the drawing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from saew.report.plots.base import Cols, colour, panels, save

OTHER = -1000          # the node id of lumped small clusters in a Sankey ("other")


@dataclass(frozen=True)
class SankeyLayout:
    """Node boxes and band ends of one two-column Sankey (y grows upwards, total height 1)."""
    src_nodes: np.ndarray      # node ids, top to bottom
    src_y0: np.ndarray         # bottom of each source node
    src_h: np.ndarray          # height of each source node
    dst_nodes: np.ndarray
    dst_y0: np.ndarray
    dst_h: np.ndarray
    band_src_y0: np.ndarray    # per band: bottom of its slot in the source node
    band_dst_y0: np.ndarray    # per band: bottom of its slot in the destination node
    band_h: np.ndarray         # per band: thickness


def _stack(group: np.ndarray, order_key: np.ndarray, h: np.ndarray, node_y0: np.ndarray) -> np.ndarray:
    """Within each node (``group`` = node index), stack bands top-down by ``order_key``."""
    idx = np.lexsort((order_key, group))
    hs = h[idx]
    cum = np.cumsum(hs) - hs
    g = group[idx]
    start = np.zeros(len(g), dtype=bool)
    start[:1] = True
    start[1:] = g[1:] != g[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(g)), 0))
    within = cum - cum[first]
    node_top = node_y0[g] + np.bincount(group, weights=h, minlength=len(node_y0))[g]
    out = np.empty(len(h))
    out[idx] = node_top - within - hs
    return out


def sankey_layout(src: np.ndarray, dst: np.ndarray, flow: np.ndarray, gap: float = 0.02) -> SankeyLayout:
    """Place nodes and bands: sources by total outflow (largest on top), destinations by the
    flow-weighted mean rank of their sources (fewer crossings); node height = its total flow."""
    flow = np.asarray(flow, dtype=float)
    s_ids, s_inv = np.unique(src, return_inverse=True)
    d_ids, d_inv = np.unique(dst, return_inverse=True)
    s_tot = np.bincount(s_inv, weights=flow, minlength=len(s_ids))
    s_order = np.lexsort((s_ids, -s_tot))                    # rank -> node
    s_rank = np.empty(len(s_ids), dtype=int)
    s_rank[s_order] = np.arange(len(s_ids))
    d_tot = np.bincount(d_inv, weights=flow, minlength=len(d_ids))
    bary = np.bincount(d_inv, weights=flow * s_rank[s_inv], minlength=len(d_ids)) / np.maximum(d_tot, 1e-300)
    d_order = np.lexsort((d_ids, bary))
    d_rank = np.empty(len(d_ids), dtype=int)
    d_rank[d_order] = np.arange(len(d_ids))

    total = flow.sum()
    scale = (1.0 - gap * (max(len(s_ids), len(d_ids)) - 1)) / total if total > 0 else 0.0
    scale = max(scale, 0.0)

    def column(tot: np.ndarray, order: np.ndarray):
        h = tot * scale
        hs = h[order]
        gaps = gap * np.arange(len(order))
        top_down = np.cumsum(hs) - hs + gaps               # distance of each node's top from 1
        pad = (1.0 - (hs.sum() + gap * (len(order) - 1))) / 2
        y0 = np.empty(len(order))
        y0[order] = 1.0 - pad - top_down - hs
        return y0, h

    s_y0, s_h = column(s_tot, s_order)
    d_y0, d_h = column(d_tot, d_order)
    bh = flow * scale
    b_src = _stack(s_inv, d_rank[d_inv], bh, s_y0)
    b_dst = _stack(d_inv, s_rank[s_inv], bh, d_y0)
    return SankeyLayout(s_ids, s_y0, s_h, d_ids, d_y0, d_h, b_src, b_dst, bh)


def _band_path(x0: float, x1: float, a0: float, a1: float, b0: float, b1: float):
    """A band from [a0, a1] at x0 to [b0, b1] at x1 with cubic Bezier edges."""
    from matplotlib.path import Path as MPath

    xm = (x0 + x1) / 2
    verts = [(x0, a1), (xm, a1), (xm, b1), (x1, b1), (x1, b0), (xm, b0), (xm, a0), (x0, a0), (x0, a1)]
    codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.LINETO,
             MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.CLOSEPOLY]
    return MPath(verts, codes)


def _node_label(c) -> str:
    if c is None or (isinstance(c, float) and np.isnan(c)):
        return "other"
    c = int(c)
    return "unclustered" if c < 0 else f"c{c}"


def draw_sankey(ax, src: np.ndarray, dst: np.ndarray, flow: np.ndarray, title: str) -> None:
    """One Sankey on ``ax``: source clusters left, destination clusters right, bands = flow.

    ``src``/``dst`` are cluster ids with ``OTHER`` (-1000) for lumped small clusters."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import PathPatch, Rectangle

    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    ax.set_xlim(-0.32, 1.32)
    ax.set_ylim(-0.02, 1.02)
    keep = np.asarray(flow, dtype=float) > 0
    if not keep.any():
        ax.text(0.5, 0.5, "no flow", ha="center", va="center", fontsize=9)
        return
    src, dst, flow = np.asarray(src)[keep], np.asarray(dst)[keep], np.asarray(flow, dtype=float)[keep]
    lay = sankey_layout(src, dst, flow)
    w = 0.05
    s_idx = np.searchsorted(lay.src_nodes, src)
    colours = np.where((lay.src_nodes[s_idx] == OTHER)[:, None], np.array([[0.7, 0.7, 0.7, 1.0]]),
                       colour(lay.src_nodes[s_idx]))
    bands = [PathPatch(_band_path(w, 1 - w, a, a + h, b, b + h))
             for a, b, h in zip(lay.band_src_y0, lay.band_dst_y0, lay.band_h)]
    ax.add_collection(PatchCollection(bands, facecolors=colours, alpha=0.45, edgecolors="none"))
    for nodes, y0, h, x, ha, lx in ((lay.src_nodes, lay.src_y0, lay.src_h, 0.0, "right", -0.01),
                                    (lay.dst_nodes, lay.dst_y0, lay.dst_h, 1 - w, "left", 1.01)):
        face = np.where((nodes == OTHER)[:, None], np.array([[0.6, 0.6, 0.6, 1.0]]), colour(nodes))
        ax.add_collection(PatchCollection([Rectangle((x, a), w, b) for a, b in zip(y0, h)],
                                          facecolors=face, edgecolors="0.2", linewidths=0.4))
        for n, a, b in zip(nodes, y0, h):
            if b > 0.012:
                ax.text(lx, a + b / 2, "other" if n == OTHER else _node_label(n), ha=ha, va="center",
                        fontsize=6.5)


def sankey_figure(cells: Sequence[tuple[str, Cols]], suptitle: str, path: Path) -> Path:
    """Several Sankeys (one per layer pair) in a grid of at most 4 columns."""
    n = len(cells)
    ncol = min(4, n)
    nrow = -(-n // ncol)
    fig, axes = panels(3.3, 3.2, nrow, ncol, left=0.1, right=0.1, wgap=0.2, hgap=0.4, bottom=0.1)
    for ax, (title, c) in zip(axes, cells):
        draw_sankey(ax, c["src"], c["dst"], c["flow"], title)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)
