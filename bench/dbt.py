"""Benchmark: `saew build` on a GPT-2-v5-32k-shaped warehouse, and one feature's lineage query.

Targets (issue 7): the build in at most 120 s; one feature's lineage query at most 100 ms warm.

The warehouse is synthetic, generated with numpy straight into the lake (Lake.write):
12 layers x 32,768 features; matches for every link (decoder: folded, folded-decoder,
unfolded, cosine, random; text: cosine) as random bijections, plus the null model's further
draws (--draws, default 10 as `saew match --method random --draws`: decoder random.1 ...
random.<N-1>, and text random ... random.<N-1>); random clusters in decoder and
text space (~1,000 clusters per layer, noise and no-vector labels); sparse transport plans
(decoder/emd, text/emd); 600,000 tokens x 32 active features per layer of activations;
co-activation pairs (--coact-pairs per layer); correlations (top 16 per source feature); one
description per feature. The `features` rows carry 4-float vectors (the dbt models read only
their ids and dec_norm), so generation stays quick.

Figures are reported as ratios to baselines measured in the same run (plus absolute seconds):
  build / scan  -- the build against one DuckDB aggregation over all activations (the largest input);
  lookup / scan -- the warm lineage lookup against a full scan of fct_feature_lineage;
and the peak RSS of the build's processes (resource.getrusage RUSAGE_CHILDREN).

    .venv/bin/python bench/dbt.py                       # full size (slow to generate: minutes)
    .venv/bin/python bench/dbt.py --features 2048 --tokens 40000 --layers 4   # quick check
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from saew.storage import catalog  # noqa: E402
from saew.storage.lake import Lake, float_lists  # noqa: E402
from saew.storage.names import null_draw_method  # noqa: E402

RELEASE = "gpt2-v5-32k"
MATCH_LINKS = [("decoder", m) for m in ("folded", "folded-decoder", "unfolded", "cosine", "random")] + \
              [("text", "cosine")]


def match_links(draws: int) -> list[tuple[str, str]]:
    """MATCH_LINKS plus the null's draws 1 .. draws-1 in decoder space and 0 .. draws-1 in text space."""
    return MATCH_LINKS + [("decoder", null_draw_method(i)) for i in range(1, draws)] + \
        [("text", null_draw_method(i)) for i in range(draws if draws > 1 else 0)]


def generate(lake: Lake, n_layers: int, d_sae: int, n_tokens: int, active: int, n_clusters: int,
             coact_pairs: int, seed: int = 0, draws: int = 10) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    rows: dict[str, int] = {}

    def count(table: str, n: int) -> None:
        rows[table] = rows.get(table, 0) + n

    feats = np.arange(d_sae, dtype=np.int32)
    labels_at: dict[tuple[str, int], np.ndarray] = {}
    for layer in range(n_layers):
        with lake.transaction():
            lake.write("saes", {
                "model": ["gpt2"], "hook": [f"blocks.{layer}.hook_resid_post"], "d_in": [768], "d_sae": [d_sae],
                "architecture": ["topk"], "k": [active], "normalize": ["layer_norm"],
                "b_dec": float_lists(np.zeros((1, 4), np.float32)), "apply_b_dec_to_input": [False],
                "source_format": ["bench"], "source_path": ["<bench>"], "source_sha256": ["0" * 64],
                "run_id": ["bench"], "ingested_at": [np.datetime64("2025-01-01T00:00:00", "us")]},
                release=RELEASE, layer=layer)
            vec = rng.standard_normal((d_sae, 4)).astype(np.float32)
            lake.write("features", {
                "feature": feats, "w_enc": float_lists(vec), "b_enc": np.zeros(d_sae, np.float32),
                "w_dec": float_lists(vec), "threshold": np.full(d_sae, np.nan, np.float32),
                "dec_norm": np.linalg.norm(vec, axis=1)}, release=RELEASE, layer=layer)
            lake.write("descriptions", {
                "feature": feats, "description": [f"layer {layer} feature {f}" for f in range(d_sae)],
                "explainer": ["bench"] * d_sae, "source": ["bench"] * d_sae}, release=RELEASE, layer=layer)
            count("features", d_sae)
            for space, noise, none in (("decoder", 0.25, 0.0), ("text", 0.20, 0.05)):
                u = rng.random(d_sae)
                labels = rng.integers(0, n_clusters, d_sae).astype(np.int32)
                labels[u < noise] = -1
                labels[(u >= noise) & (u < noise + none)] = -2
                labels_at[(space, layer)] = labels
                lake.write("clusters", {
                    "feature": feats, "cluster": labels, "probability": rng.random(d_sae).astype(np.float32),
                    "x": rng.random(d_sae).astype(np.float32), "y": rng.random(d_sae).astype(np.float32)},
                    release=RELEASE, layer=layer, space=space)
                count("clusters", d_sae)
            # activations: `active` distinct features per token (one per block of d_sae / active)
            block = d_sae // active
            start = rng.integers(0, d_sae, n_tokens, dtype=np.int64)[:, None]
            f = (start + np.arange(active, dtype=np.int64)[None, :] * block
                 + rng.integers(0, block, (n_tokens, active))) % d_sae
            tok = np.repeat(np.arange(n_tokens, dtype=np.int64), active)
            lake.write("activations", {
                "token_id": tok, "feature": f.reshape(-1).astype(np.int32),
                "value": rng.exponential(1.0, n_tokens * active).astype(np.float32)}, release=RELEASE, layer=layer)
            lake.write("activation_sets", {"n_tokens": [n_tokens], "source": ["bench"], "run_id": ["bench"]},
                       release=RELEASE, layer=layer)
            count("activations", n_tokens * active)
            del f, tok
            # co-activation pairs a < b with n_ab > 0
            a = rng.integers(0, d_sae - 1, coact_pairs)
            b = a + 1 + (rng.integers(0, d_sae, coact_pairs) % (d_sae - 1 - a))
            key = np.unique(a.astype(np.int64) * d_sae + b)
            lake.write("coactivations", {
                "feature_a": (key // d_sae).astype(np.int32), "feature_b": (key % d_sae).astype(np.int32),
                "n_ab": rng.integers(1, 50, len(key))}, release=RELEASE, layer=layer)
            count("coactivations", len(key))
        if layer + 1 == n_layers:
            break
        with lake.transaction():
            for space, method in match_links(draws):
                perm = rng.permutation(d_sae).astype(np.int32)
                lake.write("matches", {
                    "src_feature": feats, "dst_layer": np.full(d_sae, layer + 1, np.int32), "dst_feature": perm,
                    "cost": rng.random(d_sae), "cosine": rng.uniform(0.3, 1.0, d_sae)},
                    release=RELEASE, space=space, method=method, src_layer=layer)
                count("matches", d_sae)
            for space in ("decoder", "text"):
                # each bucket (clusters, then the unclustered bucket -1) sends its size to 3 random
                # destination buckets: rows sum to the bucket sizes, like a real plan
                lab = labels_at[(space, layer)]
                size = np.bincount(np.where(lab >= 0, lab + 1, 0), minlength=n_clusters + 1)
                src = np.repeat(np.arange(-1, n_clusters, dtype=np.int32), 3)
                dst = rng.integers(-1, n_clusters, len(src)).astype(np.int32)
                dst[1::3] = np.where(dst[1::3] == dst[0::3], (dst[0::3] + 2) % n_clusters, dst[1::3])
                dst[2::3] = np.where((dst[2::3] == dst[0::3]) | (dst[2::3] == dst[1::3]), -1, dst[2::3])
                dst[2::3] = np.where((dst[2::3] == dst[0::3]) | (dst[2::3] == dst[1::3]),
                                     (np.maximum(dst[0::3], dst[1::3]) + 1) % n_clusters, dst[2::3])
                w = rng.random((n_clusters + 1, 3)) + 0.05
                mass = (w / w.sum(1, keepdims=True) * size[:, None]).reshape(-1)
                keep = mass > 0
                lake.write("transport", {
                    "src_cluster": src[keep], "dst_layer": np.full(int(keep.sum()), layer + 1, np.int32),
                    "dst_cluster": dst[keep], "mass": mass[keep], "cost": rng.random(int(keep.sum()))},
                    release=RELEASE, space=space, solver="emd", src_layer=layer)
                count("transport", int(keep.sum()))
            k = 16
            dstf = (feats[:, None].astype(np.int64) + np.arange(k)[None, :] * (d_sae // k)
                    + rng.integers(0, d_sae // k, (d_sae, k))) % d_sae
            n_src = rng.integers(10, 1000, d_sae * k)
            n_dst = rng.integers(10, 1000, d_sae * k)
            lake.write("correlations", {
                "src_feature": np.repeat(feats, k), "dst_layer": np.full(d_sae * k, layer + 1, np.int32),
                "dst_feature": dstf.reshape(-1).astype(np.int32), "n_src": n_src, "n_dst": n_dst,
                "n_both": np.minimum(n_src, n_dst) // 2, "pearson": rng.uniform(0.0, 1.0, d_sae * k)},
                release=RELEASE, src_layer=layer)
            count("correlations", d_sae * k)
    catalog.refresh(lake)
    return rows


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--features", type=int, default=32768)
    ap.add_argument("--tokens", type=int, default=600_000)
    ap.add_argument("--active", type=int, default=32)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--coact-pairs", type=int, default=2_000_000, help="co-activation pairs per layer")
    ap.add_argument("--draws", type=int, default=10, help="null draws (random, random.1, ...) per space")
    ap.add_argument("--home", default=None, help="reuse/keep a warehouse here (default: a temp dir)")
    args = ap.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="saew-bench-dbt-")) / "home"
    lake = Lake(home)
    t0 = time.perf_counter()
    if not lake.has_data("saes"):
        rows = generate(lake, args.layers, args.features, args.tokens, args.active, args.clusters, args.coact_pairs,
                        draws=args.draws)
        print(f"generated in {time.perf_counter() - t0:.1f} s: {rows}")

    # baseline: one aggregation over every activation, in-process DuckDB over the lake
    con = lake.connect()
    scan = timed(lambda: con.sql("select layer, feature, count(*), avg(value), max(value) from activations "
                                 "where value > 0 group by layer, feature").fetchall())
    con.close()

    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "saew", "build", "--home", str(home), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    build = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(r.stdout.strip()[-300:], r.stderr.strip()[-2000:])
    if r.returncode != 0:
        sys.exit(f"build failed ({r.returncode})")

    import duckdb

    con = duckdb.connect(str(home / "saew.duckdb"), read_only=True)
    n_lineage = con.sql("select count(*) from fct_feature_lineage").fetchall()[0][0]
    n_null, n_vs = con.sql("select max(n_null_draws), count(*) from fct_layer_evolution_vs_null").fetchall()[0]
    print(f"fct_layer_evolution_vs_null: {n_vs} rows, up to {n_null} null draws per layer pair")
    full = timed(lambda: con.sql("select count(*), sum(cum_cost) from fct_feature_lineage").fetchall(), repeat=3)
    sql = ("select l.depth, l.layer, l.feature, l.step_cosine, l.cum_cost, l.description "
           "from fct_feature_lineage as l where l.release = ? and l.link = ? and l.root_layer = ? "
           "and l.root_feature = ? order by l.depth")
    rng = np.random.default_rng(1)
    roots = [(int(rng.integers(0, 3)), int(rng.integers(0, args.features))) for _ in range(10)]
    con.sql(sql, params=[RELEASE, "match/decoder/folded", *roots[0]]).fetchall()  # warm up
    lookups = []
    for layer, feature in roots:
        t = time.perf_counter()
        res = con.sql(sql, params=[RELEASE, "match/decoder/folded", layer, feature]).fetchall()
        lookups.append(time.perf_counter() - t)
        assert len(res) == args.layers - layer
    con.close()
    lookup = float(np.median(lookups))

    print(f"build: {build:.1f} s (target <= 120 s) = {build / scan:.1f} x the activation scan ({scan:.2f} s); "
          f"peak RSS of the build {peak_mb:.0f} MB")
    print(f"lineage rows: {n_lineage:,}; one feature's lineage (warm, median of 10): {lookup * 1e3:.1f} ms "
          f"(target <= 100 ms; max {max(lookups) * 1e3:.1f} ms) = {lookup / full:.3f} x a full scan of "
          f"fct_feature_lineage ({full * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
