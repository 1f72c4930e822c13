"""Figures of distributions: degree CCDFs, histograms, training curves and UMAP scatter plots."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from saew.report.plots.base import Cols, colour, flagged, layer_colours, panels, save, series


def ccdf_figure(c: Cols, suptitle: str, path: Path) -> Path:
    """Log-log complementary CDF of node degree, one line per layer (columns layer, degree, ccdf),
    and, where the column ccdf_random is given, the random graph's as a thin dotted line."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (ax,) = panels(5.0, 3.2, left=0.8)
    layers = list(dict.fromkeys(c["layer"].tolist()))
    cols = layer_colours(layers)
    for col, layer in zip(cols, layers):
        m = c["layer"] == layer
        real = m & (np.asarray(c["n_nodes"]) > 0) if "n_nodes" in c else m
        ax.step(c["degree"][real], c["ccdf"][real], where="post", color=col, label=f"layer {layer}", linewidth=1.2)
        if "ccdf_random" in c:
            rnd = m & (np.asarray(c["n_nodes_random"]) > 0)
            ax.step(c["degree"][rnd], c["ccdf_random"][rnd], where="post", color=col, linewidth=0.8,
                    linestyle=":", alpha=0.8)
    if "ccdf_random" in c:
        ax.plot([], [], color="0.4", linestyle=":", linewidth=0.8, label="random graph G(n, m)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("degree d", fontsize=8)
    ax.set_ylabel("share of linked features with degree >= d", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(layers) > 8 else 1)
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)


def histogram_bars(c: Cols, group: str, x: str, y: str, suptitle: str, xlabel: str, path: Path,
                   null: str | None = None) -> Path:
    """Grouped bars of pre-counted histograms (columns group, x, y), log y axis; ``null`` series grey."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = panels(6.5, 3.0)
    groups = series(c, group)
    width = 0.8 / max(len(groups), 1)
    real = 0
    for k, (name, m) in enumerate(groups):
        is_null = flagged(c, null, m)
        face = "0.6" if is_null else colour(2 * real)
        real += 0 if is_null else 1
        ax.bar(c[x][m].astype(float) - 0.4 + width * (k + 0.5), c[y][m], width=width, color=face,
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
    cols = layer_colours(layers)
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

        cmap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))   # as layer_colours
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
        ax.scatter(x[~noise], y[~noise], s=size, c=colour(cl[~noise]), linewidths=0, rasterized=True)
        ax.set_title(f"layer {layer}: {len(np.unique(cl[~noise]))} clusters", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(suptitle, fontsize=11)
    return save(fig, path)
