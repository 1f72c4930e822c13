"""Clusters: counts per layer (rpt_clusters_per_layer) and the 2-D UMAP of each layer's features
coloured by cluster (rpt_umap_points)."""
from __future__ import annotations

import numpy as np

from saew.report.items import Item, slug
from saew.report.read import Reader, Setup, evenly, missing, n_rows

SEC = "Clusters"
UMAP_MAX_LAYERS = 12
UMAP_MAX_POINTS = 4000      # per layer, a deterministic subsample (feature % step = 0)


def plot_cluster_counts(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    title = "Clusters per layer"
    cap = ("Per layer and cluster space, from the cluster labels (rpt_clusters_per_layer): the number of "
           "clusters (labels >= 0), the mean cluster size in features, and the share of features the "
           "clustering left as noise (label -1). More, smaller clusters at a layer mean a finer-grained "
           "feature geometry there.")
    miss = missing(r, "rpt_clusters_per_layer", "saew cluster")
    if miss:
        return [Item(SEC, title, cap, note=miss)]
    c = r.cols("SELECT cluster_space, layer, n_clusters, mean_cluster_size, noise_share FROM rpt_clusters_per_layer "
               "WHERE release = $r ORDER BY cluster_space, layer", {"r": s.release})
    if n_rows(c) == 0:
        return [Item(SEC, title, cap, note="no data: run saew cluster")]
    name = "clusters_per_layer.png"
    plots.line_panels(c, "layer", "cluster_space", [("n_clusters", "number of clusters"),
                                                    ("mean_cluster_size", "mean cluster size (features)"),
                                                    ("noise_share", "noise share")],
                      "Clusters per layer", s.out / name, xlabel="layer")
    return [Item(SEC, title, cap, file=name)]


def plot_umap(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    cap = ("The 2-D UMAP of each layer's features (decoder rows, or description embeddings for the "
           "text space), coloured by cluster; noise is light grey. Colours are per cluster id and do "
           "not carry over between layers. Tight, well-separated blobs are clean clusters. "
           f"At most {UMAP_MAX_LAYERS} layers (evenly spaced) and {UMAP_MAX_POINTS} features per "
           "layer (every k-th feature) are drawn.")
    title = "UMAP of clusters"
    miss = missing(r, "rpt_umap_points", "saew cluster") or missing(r, "rpt_clusters_per_layer", "saew cluster")
    if miss:
        return [Item(SEC, title, cap, note=miss)]
    layers = r.cols("SELECT cluster_space, layer, n_with_xy FROM rpt_clusters_per_layer WHERE release = $r "
                    "AND n_with_xy > 0 ORDER BY cluster_space, layer", {"r": s.release})
    if n_rows(layers) == 0:
        return [Item(SEC, title, cap, note="no data: run saew cluster (clusters with x, y)")]
    items = []
    for space in dict.fromkeys(layers["cluster_space"].tolist()):
        m = layers["cluster_space"] == space
        chosen = evenly([int(v) for v in layers["layer"][m]], UMAP_MAX_LAYERS)
        step = max(1, int(np.ceil(layers["n_with_xy"][m].max() / UMAP_MAX_POINTS)))
        c = r.cols("SELECT layer, cluster, x, y FROM rpt_umap_points WHERE release = $r AND cluster_space = $s "
                   "AND list_contains($l, layer) AND feature % $k = 0 ORDER BY layer, feature",
                   {"r": s.release, "s": space, "l": chosen, "k": step})
        name = f"umap_{slug(space)}.png"
        plots.umap_figure(c, chosen, f"UMAP of {space}-space features, coloured by cluster", s.out / name)
        items.append(Item(SEC, f"UMAP of clusters ({space} space)", cap, file=name))
    return items
