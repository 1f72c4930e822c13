"""Drawing helpers for ``saew plot`` / ``saew report``: matplotlib (Agg, no pyplot state), offline.

Every drawing function of this package takes columns already computed by SQL on the dbt models
(a dict of numpy arrays) and draws them; none computes a metric. The only arithmetic is layout
(where a Sankey band sits, which colour a cluster gets). Images are written atomically.
matplotlib is imported inside the functions: ``saew --help`` imports this package.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

Cols = Mapping[str, np.ndarray]

DPI = 100


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


def colour(i: int | np.ndarray):
    """tab20 colours by integer id (cluster ids, series numbers)."""
    from matplotlib import colormaps

    return colormaps["tab20"](np.asarray(i) % 20)


def layer_colours(layers: Sequence[int]):
    """viridis from dark (first layer) to light (last), linear in the layer number."""
    from matplotlib import colormaps

    l = np.asarray(layers, dtype=float)
    span = float(l.max() - l.min()) if len(l) else 0.0
    return colormaps["viridis"](0.9 * (l - l.min()) / span if span > 0 else np.zeros(len(l)))


def series(c: Cols, key: str) -> list[tuple[str, np.ndarray]]:
    """Split rows by the value of column ``key`` (rows already sorted by x), in order of appearance."""
    vals = c[key]
    return [(str(v), vals == v) for v in dict.fromkeys(vals.tolist())]


def flagged(c: Cols, flag: str | None, m: np.ndarray) -> bool:
    """Whether the rows ``m`` of a series carry the boolean column ``flag`` (e.g. is_null)."""
    return bool(flag and flag in c and np.asarray(c[flag][m], dtype=bool).any())
