"""Benchmark: clusters found vs clusters planted, per regime (issue 14, item 6).

    .venv/bin/python bench/planted.py [--regimes all,shared,...] [--configs before hdbscan leiden ...]
        [--layers 4] [--d-sae 768] [--d-in 384] [--seed 0] [--set key=value ...]

Releases from ``tests/factories_planted.py`` (one per regime: weak separation with a shared
direction, a compact outlier group, varied sizes, background rows, all together; known events
between layers). For each configuration, every layer's decoder rows are clustered in this
process with ``saew.compute.clustering.layer.cluster_layer`` and compared with the planted
labels: adjusted Rand index over all features (background = its own label -1, as noise is),
and the number of clusters found (planted in the header).

Configurations: ``before`` is ``saew cluster``'s code and defaults before issue 14, read from
git (commit BEFORE, its ``step.py``, run unchanged); ``hdbscan`` and ``leiden`` are today's
defaults with that algorithm; ``name:key=value,key=value`` is a variant (ClusterConfig fields,
e.g. ``leaf:selection=leaf`` or ``nocap:max_cluster_share=0``). ``--set`` changes a field in
every non-``before`` configuration.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BEFORE = "4e25c22"          # the last commit of the pre-issue-14 clustering


def load_before():
    """The pre-issue-14 ``saew/compute/clustering/step.py`` as a module (its code, unchanged)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:saew/compute/clustering/step.py"],
                         capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("saew_cluster_before", loader=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    exec(compile(src, f"{BEFORE}:step.py", "exec"), mod.__dict__)
    return mod


def _value(field_type, text: str):
    if text in ("True", "False"):
        return text == "True"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_config(spec: str, base):
    """``hdbscan`` | ``leiden`` | ``name:key=value,...`` -> (name, ClusterConfig)."""
    name, _, kv = spec.partition(":")
    cfg = replace(base, algorithm=name) if name in ("hdbscan", "leiden") else base
    types = {f.name: f.type for f in fields(base)}
    for item in filter(None, kv.split(",")):
        k, _, v = item.partition("=")
        if k not in types:
            raise SystemExit(f"--configs {spec}: unknown setting {k!r}")
        cfg = replace(cfg, **{k: _value(types[k], v)})
    return name, cfg


def labels_of(cfg, before, w: np.ndarray) -> np.ndarray:
    has = np.ones(len(w), bool)
    if cfg is None:
        return before.cluster_layer(w, has, before.ClusterConfig()).labels
    from saew.compute.clustering.layer import cluster_layer

    return cluster_layer(w, has, cfg).labels


def main() -> None:
    import warnings

    from sklearn.metrics import adjusted_rand_score

    from saew.compute.clustering.config import ClusterConfig
    from tests.factories_planted import REGIMES, planted_release

    ap = argparse.ArgumentParser()
    ap.add_argument("--regimes", default=",".join(REGIMES))
    ap.add_argument("--configs", nargs="+", default=["before", "hdbscan", "leiden"])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-sae", type=int, default=768)
    ap.add_argument("--d-in", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    base = ClusterConfig()
    for item in a.set:
        base = parse_config(f"x:{item}", base)[1]
    before = load_before() if "before" in a.configs else None
    configs = [("before", None) if s == "before" else parse_config(s, base) for s in a.configs]
    print(f"ARI (clusters found) per layer vs planted; {a.layers} layers x {a.d_sae} features "
          f"in {a.d_in}-D, seed {a.seed}")
    summary = {}
    for regime in a.regimes.split(","):
        p = planted_release(regime, n_layers=a.layers, d_sae=a.d_sae, d_in=a.d_in, seed=a.seed)
        k = [int(p.labels[L].max()) + 1 for L in p.layers]
        print(f"\n{regime} (planted clusters per layer: {' '.join(map(str, k))})")
        for name, cfg in configs:
            t = time.perf_counter()
            cells, aris = [], []
            for L in p.layers:
                lab = labels_of(cfg, before, p.w_dec[L])
                aris.append(adjusted_rand_score(p.labels[L], lab))
                cells.append(f"{aris[-1]:.2f}/{int(lab.max()) + 1:<3d}")
            summary[(regime, name)] = (float(np.mean(aris)), float(np.min(aris)))
            print(f"  {name:12s} {'  '.join(cells)}  mean {np.mean(aris):.2f} min {np.min(aris):.2f} "
                  f"({time.perf_counter() - t:.0f}s)", flush=True)
    names = [n for n, _ in configs]
    print("\nmean ARI (min over layers) | " + " | ".join(f"{n:>12s}" for n in names))
    for regime in a.regimes.split(","):
        print(f"{regime:26s} | " + " | ".join(
            f"{summary[(regime, n)][0]:.2f} ({summary[(regime, n)][1]:.2f})".rjust(12) for n in names))


if __name__ == "__main__":
    main()
