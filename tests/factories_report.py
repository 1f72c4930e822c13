"""A tiny warehouse for the report tests: every lake table the report reads, written with
``Lake.write`` and consistent enough for the dbt data tests (transport rows sum to bucket
sizes, co-activation counts come from the activations), then a real ``saew build``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import ot

from tests.factories import make_sae, put_sae, run_saew
from saew.storage import catalog
from saew.storage.lake import Lake

NASTY = "<script>alert('x')</script> & \"quotes\""


def make_lake(home: Path, release: str = "r", n_layers: int = 4, d_sae: int = 24, d_in: int = 8,
              seed: int = 0) -> Lake:
    """SAEs, descriptions, clusters (decoder and text, with UMAP x/y), folded and random matches,
    an emd transport plan, reconstruction with identity/random baselines, training curves."""
    lake = Lake(home)
    rng = np.random.default_rng(seed)
    for layer in range(n_layers):
        put_sae(lake, release, layer, make_sae(d_in, d_sae, seed=seed + layer))
    f = np.arange(d_sae, dtype=np.int32)
    labels: dict[tuple[int, str], np.ndarray] = {}
    with lake.transaction():
        for layer in range(n_layers):
            desc = np.array([f"layer {layer} feature {i}: tokens about topic {i % 5}" for i in f], dtype=object)
            desc[0] = NASTY
            lake.write("descriptions", {"feature": f, "description": desc, "explainer": ["test"] * d_sae,
                                        "source": ["test"] * d_sae}, release=release, layer=layer)
            for space in ("decoder", "text"):
                cl = ((f + layer) % 4).astype(np.int32)
                cl[rng.random(d_sae) < 0.15] = -1
                labels[layer, space] = cl
                centre = np.stack([np.cos(cl), np.sin(cl)], 1) * 5
                xy = centre + rng.standard_normal((d_sae, 2))
                lake.write("clusters", {"feature": f, "cluster": cl, "probability": rng.random(d_sae).astype(np.float32),
                                        "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32)},
                           release=release, layer=layer, space=space)
            # activations: each token has a topic cluster whose members fire together
            n_tok = 64
            topic = rng.integers(0, 4, n_tok)
            cl = labels[layer, "decoder"]
            prob = np.where(cl[None, :] == topic[:, None], 0.6, 0.05)
            act = (rng.random((n_tok, d_sae)) < prob) * rng.uniform(0.1, 2.0, (n_tok, d_sae))
            t, j = np.nonzero(act)
            lake.write("activations", {"token_id": t.astype(np.int64), "feature": j.astype(np.int32),
                                       "value": act[t, j].astype(np.float32)}, release=release, layer=layer)
            lake.write("activation_sets", {"n_tokens": [n_tok], "source": ["test"], "run_id": ["test"]},
                       release=release, layer=layer)
            on = (act > 0).astype(np.int64)
            co = on.T @ on
            fa, fb = np.nonzero(np.triu(co, 1))
            lake.write("coactivations", {"feature_a": fa.astype(np.int32), "feature_b": fb.astype(np.int32),
                                         "n_ab": co[fa, fb]}, release=release, layer=layer)
            lake.write("training_log", {"step": np.arange(10, dtype=np.int32),
                                        "tokens_seen": np.arange(10, dtype=np.int64) * 512,
                                        "mse": np.linspace(1, 0.1, 10), "fvu": np.linspace(0.9, 0.1 + 0.02 * layer, 10),
                                        "l0": np.linspace(20, 8, 10), "dead_frac": np.linspace(0, 0.1, 10)},
                       release=release, layer=layer)
        for layer in range(n_layers - 1):
            for method in ("folded", "random"):
                perm = f if method == "folded" else rng.permutation(d_sae).astype(np.int32)
                cosine = rng.uniform(0.5, 1, d_sae) if method == "folded" else rng.uniform(-0.3, 0.3, d_sae)
                if method == "folded":
                    cosine[0] = 0.99        # feature 0 (the NASTY description) persists all the way
                lake.write("matches", {"src_feature": f, "dst_layer": np.full(d_sae, layer + 1, np.int32),
                                       "dst_feature": perm, "cost": rng.random(d_sae) * (1 if method == "folded" else 3),
                                       "cosine": cosine},
                           release=release, space="decoder", method=method, src_layer=layer)
            ids_a, s_a = np.unique(labels[layer, "decoder"], return_counts=True)
            ids_b, s_b = np.unique(labels[layer + 1, "decoder"], return_counts=True)
            cost = rng.random((len(ids_a), len(ids_b)))
            plan = ot.emd(s_a / d_sae, s_b / d_sae, cost) * d_sae      # rows sum to bucket sizes
            i, j = np.nonzero(plan > 1e-9)
            lake.write("transport", {"src_cluster": ids_a[i].astype(np.int32), "dst_layer": np.full(len(i), layer + 1, np.int32),
                                     "dst_cluster": ids_b[j].astype(np.int32), "mass": plan[i, j], "cost": cost[i, j]},
                       release=release, space="decoder", solver="emd", src_layer=layer)
        for method, ev in (("folded", 0.8), ("identity", 0.3), ("random", 0.05)):
            n = n_layers - 1
            lake.write("reconstruction", {"src_layer": np.arange(n, dtype=np.int32), "dst_layer": np.arange(1, n + 1, dtype=np.int32),
                                          "n_tokens": np.full(n, 1000, np.int64), "fvu": 1 - (ev + 0.01 * np.arange(n)),
                                          "explained_variance": ev + 0.01 * np.arange(n)},
                       release=release, space="decoder", method=method)
    catalog.refresh(lake)
    return lake


def make_report_warehouse(home: Path, release: str = "r", n_layers: int = 4, build: bool = True) -> Lake:
    """The lake above plus a real ``saew build`` (the dbt marts) when ``build``."""
    lake = make_lake(home, release, n_layers)
    if build:
        code, out, err = run_saew(home, "build", "--quiet")
        if code != 0:
            raise RuntimeError(f"saew build failed on the report warehouse:\n{out}\n{err}")
    return lake
