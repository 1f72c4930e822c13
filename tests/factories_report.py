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
from saew.storage.names import null_draw_method

NASTY = "<script>alert('x')</script> & \"quotes\""


NULL_DRAWS = 3                  # random, random.1, random.2 (decoder space)
NO_STRUCTURE = (2, "decoder")   # the one (layer, space) whose clustering has no structure


def make_lake(home: Path, release: str = "r", n_layers: int = 4, d_sae: int = 24, d_in: int = 8,
              seed: int = 0) -> Lake:
    """SAEs, descriptions, clusters (decoder and text, with UMAP x/y) and their cluster_quality
    (layer 2 of decoder space without structure), folded matches and NULL_DRAWS random ones
    (random, random.1, ...), an emd transport plan, reconstruction with identity/random
    baselines, training curves."""
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
                sizes = np.bincount(cl[cl >= 0])
                lake.write("cluster_quality", {
                    "n_clusters": [int((sizes > 0).sum())], "noise_frac": [float((cl == -1).mean())],
                    "coherence": [0.5 - 0.05 * layer], "silhouette": [0.2], "params": ["{}"],
                    "stability_ari": [0.9], "silhouette_null": [0.0], "coherence_null": [0.1],
                    "largest_share": [float(sizes.max() / d_sae)],
                    "has_structure": [(layer, space) != NO_STRUCTURE]}, release=release, layer=layer, space=space)
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
            # the co-activation graph's degree distribution (edges NPMI > 0, as saew communities
            # writes it), next to a random G(n, m) with the same nodes and edge count
            n_f = on.sum(0)
            p_ab, p_f = co[fa, fb] / n_tok, n_f / n_tok
            with np.errstate(divide="ignore"):
                npmi = np.where(p_ab >= 1, 1.0, np.log(p_ab / (p_f[fa] * p_f[fb])) / -np.log(p_ab))
            live = np.flatnonzero(n_f > 0)
            deg = np.bincount(np.concatenate([fa[npmi > 0], fb[npmi > 0]]), minlength=d_sae)[live]
            pairs = np.array([(a, b) for i, a in enumerate(live) for b in live[i + 1:]])
            pick = pairs[rng.choice(len(pairs), int((npmi > 0).sum()), replace=False)]
            rdeg = np.bincount(pick.ravel(), minlength=d_sae)[live]
            top = int(max(deg.max(), rdeg.max())) + 1
            counts, rcounts = np.bincount(deg, minlength=top), np.bincount(rdeg, minlength=top)
            seen = np.flatnonzero((counts > 0) | (rcounts > 0))
            lake.write("graph_degrees", {"degree": seen.astype(np.int64), "n_nodes": counts[seen].astype(np.int64),
                                         "n_nodes_random": rcounts[seen].astype(np.int64)},
                       release=release, layer=layer)
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
            draws = np.random.default_rng([seed, 1, layer])    # the null's further draws
            for i in range(1, NULL_DRAWS):
                lake.write("matches", {"src_feature": f, "dst_layer": np.full(d_sae, layer + 1, np.int32),
                                       "dst_feature": draws.permutation(d_sae).astype(np.int32),
                                       "cost": draws.random(d_sae) * 3, "cosine": draws.uniform(-0.3, 0.3, d_sae)},
                           release=release, space="decoder", method=null_draw_method(i), src_layer=layer)
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
        write_browser_tables(lake, release, n_layers, d_sae)
    catalog.refresh(lake)
    return lake


CONTEXT = ["The", " cat", " <b>sat</b>", " on", " the", " mat"]   # a nasty token among them


def write_browser_tables(lake: Lake, release: str, n_layers: int, d_sae: int) -> None:
    """What the feature browser reads beyond the report's tables: activation examples (features
    0-3 of every layer: three top windows peaking on token 2 and one quantile sample), feature
    statistics with logit lists (layer 0, features 0-2) and correlations between adjacent layers
    (feature i -> i with pearson 0.97, i -> i + 1 with 0.4)."""
    feats = [0, 1, 2, 3]
    rows = [(f, kind, rank) for f in feats for kind, rank in (("top", 0), ("top", 1), ("top", 2), ("quantile", 0))]
    for layer in range(n_layers):
        value = [2.0 - 0.5 * rank if kind == "top" else 0.3 for _, kind, rank in rows]
        lake.write("examples", {
            "feature": [f for f, _, _ in rows], "kind": [k for _, k, _ in rows], "rank": [r for _, _, r in rows],
            "token_id": list(range(len(rows))), "tokens": [CONTEXT] * len(rows),
            "acts": [[0.0, 0.1, v, 0.5 * v, 0.0, 0.0] for v in value], "peak": [2] * len(rows), "value": value},
            release=release, layer=layer)
    lake.write("feature_stats", {
        "feature": [0, 1, 2], "max_act": [3.0, 2.0, 1.0], "frac_nonzero": [0.01, 0.02, 0.03],
        "pos_str": [[" yes", " <ok>"]] * 3, "pos_values": [[1.5, 1.0]] * 3, "neg_str": [[" no"]] * 3,
        "neg_values": [[-2.0]] * 3, "topk_cos_indices": [[1, 2]] * 3, "topk_cos_values": [[0.9, 0.8]] * 3,
        "source": ["neuronpedia"] * 3}, release=release, layer=0)
    f = np.arange(d_sae, dtype=np.int32)
    for layer in range(n_layers - 1):
        lake.write("correlations", {
            "src_feature": np.concatenate([f, f]), "dst_layer": np.full(2 * d_sae, layer + 1, np.int32),
            "dst_feature": np.concatenate([f, (f + 1) % d_sae]).astype(np.int32),
            "n_src": np.full(2 * d_sae, 10, np.int64), "n_dst": np.full(2 * d_sae, 10, np.int64),
            "n_both": np.concatenate([np.full(d_sae, 9), np.full(d_sae, 4)]).astype(np.int64),
            "pearson": np.concatenate([np.full(d_sae, 0.97), np.full(d_sae, 0.4)])},
            release=release, src_layer=layer)


def make_report_warehouse(home: Path, release: str = "r", n_layers: int = 4, build: bool = True) -> Lake:
    """The lake above plus a real ``saew build`` (the dbt marts) when ``build``."""
    lake = make_lake(home, release, n_layers)
    if build:
        code, out, err = run_saew(home, "build", "--quiet")
        if code != 0:
            raise RuntimeError(f"saew build failed on the report warehouse:\n{out}\n{err}")
    return lake


_BUILT: dict[str, Path] = {}


def built_report_warehouse() -> Path:
    """The home of one report warehouse (built and reported once per test session, then shared
    read-only: tests that write copy it first), after ``saew build`` and ``saew report``."""
    if "home" not in _BUILT:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="saew-report-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        home = root / "home"
        make_report_warehouse(home)
        code, out, err = run_saew(home, "report", "--release", "r")
        if code != 0 or "warning" in err or out.strip() != str(home / "reports" / "r" / "index.html"):
            raise RuntimeError(f"saew report failed on the report warehouse:\n{out}\n{err}")
        _BUILT["home"] = home
    return _BUILT["home"]
