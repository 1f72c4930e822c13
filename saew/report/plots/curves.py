"""Curves per layer pair: one line per series (links coloured, null and baseline series grey and
dashed, with their band where the model gives one), box plots from SQL percentiles, and median
lines with interquartile bands."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from saew.report.plots.base import Cols, colour, flagged, panels, save, series

NULL_STYLES = ({"color": "0.2", "linestyle": "--"}, {"color": "0.45", "linestyle": ":"},
               {"color": "0.55", "linestyle": "-."}, {"color": "0.35", "linestyle": (0, (5, 1, 1, 1))})


def line_panels(c: Cols, x: str, group: str, metrics: Sequence[tuple[str, str]], suptitle: str,
                path: Path, ncol: int = 3, xlabel: str = "source layer l (pair l -> next)",
                hlines: Mapping[str, float] | None = None, null: str | None = None) -> Path:
    """One panel per metric; one line per ``group`` value. Series whose boolean column ``null``
    is set (the null model, baselines) are dashed grey, with a shaded band between the columns
    ``<metric>_lo`` and ``<metric>_hi`` where those exist and are not NULL."""
    from matplotlib.ticker import MaxNLocator

    n = len(metrics)
    ncol = min(ncol, n)
    nrow = -(-n // ncol)
    fig, axes = panels(3.6, 2.5, nrow, ncol)
    groups = series(c, group)
    real = [s for s in groups if not flagged(c, null, s[1])]
    nulls = [s for s in groups if flagged(c, null, s[1])]
    style = {name: {"color": colour(2 * i), "linewidth": 1.6} for i, (name, _) in enumerate(real)}
    style |= {name: {**NULL_STYLES[i % len(NULL_STYLES)], "linewidth": 1.3} for i, (name, _) in enumerate(nulls)}
    for ax, (col, label) in zip(axes, metrics):
        for name, m in groups:
            ax.plot(c[x][m], c[col][m], marker="o", markersize=3, label=name, **style[name])
            lo, hi = c.get(f"{col}_lo"), c.get(f"{col}_hi")
            if name in dict(nulls) and lo is not None and hi is not None:
                band = np.isfinite(lo[m].astype(float)) & np.isfinite(hi[m].astype(float))
                if band.any():
                    ax.fill_between(c[x][m][band], lo[m][band].astype(float), hi[m][band].astype(float),
                                    color=style[name]["color"], alpha=0.15, linewidth=0)
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


BOX_QUANTILES = ("p05", "p25", "p50", "p75", "p95")


def box_panels(c: Cols, groups: str, metrics: Sequence[tuple[str, str]], suptitle: str, path: Path,
               null: str | None = None) -> Path:
    """Box plots drawn from SQL percentiles: columns ``<metric>_p05, _p25, _p50, _p75, _p95`` per
    row; one box per (src_layer, group value), groups side by side; ``null`` series grey."""
    groups_ = series(c, groups)
    n_boxes = len(np.unique(c["src_layer"])) * max(len(groups_), 1)
    fig, axes = panels(min(16.0, max(5.5, 0.3 * n_boxes)), 2.6, len(metrics), 1)
    width = 0.8 / max(len(groups_), 1)
    for ax, (col, label) in zip(axes, metrics):
        handles = []
        q = np.stack([np.asarray(c[f"{col}_{p}"], dtype=float) for p in BOX_QUANTILES], axis=1)
        for k, (name, m) in enumerate(groups_):
            ok = np.isfinite(q).all(axis=1) & m
            if not ok.any():
                continue
            xs = c["src_layer"][ok].astype(float) - 0.4 + width * (k + 0.5)
            stats = [{"whislo": v[0], "q1": v[1], "med": v[2], "q3": v[3], "whishi": v[4], "fliers": []}
                     for v in q[ok]]
            face = "0.6" if flagged(c, null, m) else colour(2 * k)
            b = ax.bxp(stats, positions=xs, widths=width * 0.85, patch_artist=True, manage_ticks=False,
                       boxprops={"facecolor": face, "alpha": 0.7, "linewidth": 0.6},
                       medianprops={"color": "black", "linewidth": 1.0},
                       whiskerprops={"linewidth": 0.6}, capprops={"linewidth": 0.6})
            handles.append((b["boxes"][0] if b["boxes"] else None, name))
        ax.set_xticks(np.unique(c["src_layer"]))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("source layer l (pair l -> next)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="y")
        hs = [(hd, n) for hd, n in handles if hd is not None]
        if hs:
            ax.legend([hd for hd, _ in hs], [n for _, n in hs], fontsize=7, loc="best")
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def band_panels(c: Cols, group: str, metrics: Sequence[tuple[str, str, float]], suptitle: str,
                path: Path) -> Path:
    """Median line with an interquartile band per group; columns ``<m>_p25, _p50, _p75``; a
    dashed reference line per panel."""
    fig, axes = panels(4.0, 2.7, 1, len(metrics))
    for ax, (col, label, ref) in zip(axes, metrics):
        for k, (name, m) in enumerate(series(c, group)):
            x = c["layer"][m]
            ax.plot(x, c[f"{col}_p50"][m], marker="o", markersize=3, color=colour(2 * k), label=f"{name} (median)")
            ax.fill_between(x, c[f"{col}_p25"][m].astype(float), c[f"{col}_p75"][m].astype(float),
                            color=colour(2 * k), alpha=0.25, linewidth=0)
        ax.axhline(ref, color="0.3", linestyle="--", linewidth=1.0, label="random set (background)")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("layer", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)
