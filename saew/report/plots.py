"""Drawing for ``saew plot`` / ``saew report``: matplotlib (Agg, no pyplot state), offline.

Every function here takes columns already computed by SQL on the marts (a dict of numpy
arrays) and draws them; none computes a metric. The only arithmetic is layout (where a
Sankey band sits, which colour a cluster gets). Images are written atomically.
matplotlib is imported inside the functions: ``saew --help`` imports this module.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

Cols = Mapping[str, np.ndarray]

DPI = 100
OTHER = -1000          # the node id of lumped small clusters in a Sankey ("other")


def new_figure(w: float, h: float):
    """A figure attached to an Agg canvas (no pyplot, no GUI backend, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def panels(w_cell: float, h_cell: float, nrow: int = 1, ncol: int = 1, *, left: float = 0.7,
           right: float = 0.2, top: float = 0.65, bottom: float = 0.55, wgap: float = 0.6,
           hgap: float = 0.8):
    """A figure with an nrow x ncol grid of axes, margins in inches (a fixed layout: the
    constrained/tight layout engines cost more than the drawing itself)."""
    w = left + right + ncol * w_cell + (ncol - 1) * wgap
    h = top + bottom + nrow * h_cell + (nrow - 1) * hgap
    fig = new_figure(w, h)
    axes = fig.subplots(nrow, ncol, squeeze=False, gridspec_kw={
        "left": left / w, "right": 1 - right / w, "bottom": bottom / h, "top": 1 - top / h,
        "wspace": wgap / w_cell, "hspace": hgap / h_cell})
    return fig, axes.ravel()


def save(fig, path: Path) -> Path:
    """Write a PNG atomically: a temporary name in the same folder, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    os.replace(tmp, path)
    return path


def _colour(i: int | np.ndarray):
    from matplotlib import colormaps

    return colormaps["tab20"](np.asarray(i) % 20)


def _layer_colours(layers: Sequence[int]):
    """viridis from dark (first layer) to light (last), linear in the layer number."""
    from matplotlib import colormaps

    l = np.asarray(layers, dtype=float)
    span = float(l.max() - l.min()) if len(l) else 0.0
    return colormaps["viridis"](0.9 * (l - l.min()) / span if span > 0 else np.zeros(len(l)))


# ---------------------------------------------------------------------------- Sankey
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
                       _colour(lay.src_nodes[s_idx]))
    bands = [PathPatch(_band_path(w, 1 - w, a, a + h, b, b + h))
             for a, b, h in zip(lay.band_src_y0, lay.band_dst_y0, lay.band_h)]
    ax.add_collection(PatchCollection(bands, facecolors=colours, alpha=0.45, edgecolors="none"))
    for nodes, y0, h, x, ha, lx in ((lay.src_nodes, lay.src_y0, lay.src_h, 0.0, "right", -0.01),
                                    (lay.dst_nodes, lay.dst_y0, lay.dst_h, 1 - w, "left", 1.01)):
        face = np.where((nodes == OTHER)[:, None], np.array([[0.6, 0.6, 0.6, 1.0]]), _colour(nodes))
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


# ---------------------------------------------------------------------------- curves
def _series(c: Cols, key: str) -> list[tuple[str, np.ndarray]]:
    """Split rows by the value of column ``key`` (rows already sorted by x)."""
    vals = c[key]
    return [(str(v), vals == v) for v in dict.fromkeys(vals.tolist())]


BASELINES = ("random", "identity")
NULL_STYLES = ({"color": "0.2", "linestyle": "--"}, {"color": "0.45", "linestyle": ":"},
               {"color": "0.55", "linestyle": "-."}, {"color": "0.35", "linestyle": (0, (5, 1, 1, 1))})


def _is_null_link(name: str) -> bool:
    """Baselines (drawn grey and dashed): links/series whose method is random or identity."""
    return name.rsplit("/", 1)[-1] in BASELINES


def line_panels(c: Cols, x: str, group: str, metrics: Sequence[tuple[str, str]], suptitle: str,
                path: Path, ncol: int = 3, xlabel: str = "source layer l (pair l -> next)",
                hlines: Mapping[str, float] | None = None) -> Path:
    """One panel per metric; one line per ``group`` value; null links dashed grey."""
    from matplotlib.ticker import MaxNLocator

    n = len(metrics)
    ncol = min(ncol, n)
    nrow = -(-n // ncol)
    fig, axes = panels(3.6, 2.5, nrow, ncol)
    series = _series(c, group)
    real = [s for s in series if not _is_null_link(s[0])]
    nulls = [s for s in series if _is_null_link(s[0])]
    style = {name: {"color": _colour(2 * i), "linewidth": 1.6} for i, (name, _) in enumerate(real)}
    style |= {name: {**NULL_STYLES[i % len(NULL_STYLES)], "linewidth": 1.3} for i, (name, _) in enumerate(nulls)}
    for ax, (col, label) in zip(axes, metrics):
        for name, m in series:
            ax.plot(c[x][m], c[col][m], marker="o", markersize=3, label=name, **style[name])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if hlines and col in hlines:
            ax.axhline(hlines[col], color="0.6", linewidth=0.8, linestyle=":")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def box_panels(c: Cols, groups: str, metrics: Sequence[tuple[str, str]], suptitle: str, path: Path) -> Path:
    """Box plots drawn from SQL quantiles: columns ``<metric>_q`` hold [p5, p25, p50, p75, p95]
    per row; one box per (src_layer, group value), groups side by side."""
    series = _series(c, groups)
    n_boxes = len(np.unique(c["src_layer"])) * max(len(series), 1)
    fig, axes = panels(min(16.0, max(5.5, 0.3 * n_boxes)), 2.6, len(metrics), 1)
    width = 0.8 / max(len(series), 1)
    for ax, (col, label) in zip(axes, metrics):
        handles = []
        for k, (name, m) in enumerate(series):
            ok = np.array([v is not None for v in c[f"{col}_q"]]) & m
            if not ok.any():
                continue
            q = [np.asarray(v, dtype=float) for v in c[f"{col}_q"][ok]]
            xs = c["src_layer"][ok].astype(float) - 0.4 + width * (k + 0.5)
            stats = [{"whislo": v[0], "q1": v[1], "med": v[2], "q3": v[3], "whishi": v[4], "fliers": []}
                     for v in q]
            colour = "0.6" if _is_null_link(name) else _colour(2 * k)
            b = ax.bxp(stats, positions=xs, widths=width * 0.85, patch_artist=True, manage_ticks=False,
                       boxprops={"facecolor": colour, "alpha": 0.7, "linewidth": 0.6},
                       medianprops={"color": "black", "linewidth": 1.0},
                       whiskerprops={"linewidth": 0.6}, capprops={"linewidth": 0.6})
            handles.append((b["boxes"][0] if b["boxes"] else None, name))
        ax.set_xticks(np.unique(c["src_layer"]))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("source layer l (pair l -> next)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="y")
        hs = [(h, n) for h, n in handles if h is not None]
        if hs:
            ax.legend([h for h, _ in hs], [n for _, n in hs], fontsize=7, loc="best")
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def band_panels(c: Cols, group: str, metrics: Sequence[tuple[str, str, float]], suptitle: str,
                path: Path) -> Path:
    """Median line with an interquartile band per group; columns ``<m>_q`` = [p25, p50, p75]."""
    fig, axes = panels(4.0, 2.7, 1, len(metrics))
    for ax, (col, label, ref) in zip(axes, metrics):
        for k, (name, m) in enumerate(_series(c, group)):
            q = np.array([np.asarray(v, dtype=float) for v in c[f"{col}_q"][m]]).reshape(-1, 3)
            x = c["layer"][m]
            ax.plot(x, q[:, 1], marker="o", markersize=3, color=_colour(2 * k), label=f"{name} (median)")
            ax.fill_between(x, q[:, 0], q[:, 2], color=_colour(2 * k), alpha=0.25, linewidth=0)
        ax.axhline(ref, color="0.3", linestyle="--", linewidth=1.0, label="random set (background)")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("layer", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def ccdf_figure(c: Cols, suptitle: str, path: Path) -> Path:
    """Log-log complementary CDF of node degree, one line per layer (columns layer, degree, ccdf)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (ax,) = panels(5.0, 3.2, left=0.8)
    layers = list(dict.fromkeys(c["layer"].tolist()))
    cols = _layer_colours(layers)
    for colour, layer in zip(cols, layers):
        m = c["layer"] == layer
        ax.step(c["degree"][m], c["ccdf"][m], where="post", color=colour, label=f"layer {layer}", linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("degree d (partners with NPMI > 0)", fontsize=8)
    ax.set_ylabel("share of features with degree >= d", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(layers) > 8 else 1)
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def histogram_bars(c: Cols, group: str, x: str, y: str, suptitle: str, xlabel: str, path: Path) -> Path:
    """Grouped bars of pre-counted histograms (columns group, x, y), log y axis."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = panels(6.5, 3.0)
    series = _series(c, group)
    width = 0.8 / max(len(series), 1)
    real = 0
    for k, (name, m) in enumerate(series):
        colour = "0.6" if _is_null_link(name) else _colour(2 * real)
        real += 0 if _is_null_link(name) else 1
        ax.bar(c[x][m].astype(float) - 0.4 + width * (k + 0.5), c[y][m], width=width, color=colour,
               label=name, edgecolor="none")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("features", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def training_figure(c: Cols, suptitle: str, path: Path) -> Path:
    """fvu, l0 and dead fraction against tokens seen, one line per layer."""
    layers = list(dict.fromkeys(c["layer"].tolist()))
    fig, axes = panels(3.9, 2.8, 1, 3, right=0.2 if len(layers) <= 10 else 0.75)
    cols = _layer_colours(layers)
    for ax, (col, label) in zip(axes, (("fvu", "fraction of variance unexplained"), ("l0", "L0 (active features per token)"),
                                       ("dead_frac", "dead-feature fraction"))):
        for colour, layer in zip(cols, layers):
            m = c["layer"] == layer
            ax.plot(c["x"][m], c[col][m], color=colour, linewidth=1.1, label=f"layer {layer}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("tokens seen", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fvu = c["fvu"][np.isfinite(c["fvu"])]
    if len(fvu) and (fvu > 0).all():
        axes[0].set_yscale("log")
    if len(layers) <= 10:
        axes[0].legend(fontsize=6)
    else:                                   # many layers: a colour bar instead of a long legend
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        from matplotlib.colors import ListedColormap

        cmap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))   # as _layer_colours
        sm = ScalarMappable(Normalize(min(layers), max(layers)), cmap)
        right = axes[-1].get_position()
        cb = fig.colorbar(sm, cax=fig.add_axes((right.x1 + 0.006, right.y0, 0.008, right.height)))
        cb.set_label("layer", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def umap_figure(c: Cols, layers: Sequence[int], suptitle: str, path: Path) -> Path:
    """2-D UMAP coordinates of each layer's features, coloured by cluster, noise in light grey."""
    n = len(layers)
    ncol = min(4, n)
    nrow = -(-n // ncol)
    fig, axes = panels(2.9, 2.6, nrow, ncol, left=0.15, right=0.15, wgap=0.15, hgap=0.4, bottom=0.15)
    for ax, layer in zip(axes, layers):
        m = c["layer"] == layer
        cl = c["cluster"][m]
        x, y = c["x"][m], c["y"][m]
        noise = cl < 0
        size = float(np.clip(4000.0 / max(len(cl), 1), 2.0, 30.0))   # points stay visible when few
        ax.scatter(x[noise], y[noise], s=size * 0.6, c=[(0.8, 0.8, 0.8, 1.0)], linewidths=0, rasterized=True)
        ax.scatter(x[~noise], y[~noise], s=size, c=_colour(cl[~noise]), linewidths=0, rasterized=True)
        ax.set_title(f"layer {layer}: {len(np.unique(cl[~noise]))} clusters", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)
