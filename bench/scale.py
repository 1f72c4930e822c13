"""Benchmark: a GPT-2-small-v5-32k-shaped release (12 layers x 32,768 features x d_in 768) through
ingest, match (folded and random), cluster, transport and ``saew build``, serial
(``--executor local --workers 1``) against ``--executor ray --workers 2``.

    .venv/bin/python bench/scale.py [--layers 12] [--d-sae 32768] [--d-in 768] [--workers 2]
                                    [--modes serial,ray] [--steps ingest,match,random,cluster,transport,build]
                                    [--ray-address ADDR] [--root DIR] [--out FILE.json]

Synthetic but structured weights, no downloads (as ``bench/match.py``): decoder rows drawn
around 1,024 centres (so features form clusters and have close competitors); layer l+1 keeps a
random permutation of 75% of layer l's features, perturbed, plus 25% new ones; encoders =
decoder directions + noise; TopK k = 32. The SAEs are written once as SAELens folders under
``--root``; each mode then gets a fresh home and runs every step as its own ``python -m saew``
process. Per step: wall seconds and the peak resident memory of the step's process tree (the saew
process and its pool workers; with Ray the raylet, its workers and object store, idle ones
included, also with ``--shared-ray``), sampled every 0.1 s with psutil. Without ``--ray-address`` or
``--shared-ray`` every Ray step starts (and stops) its own local cluster, as separate ``saew``
commands do, and that start-up is in its wall time; ``--shared-ray`` starts one for all steps.

Ingest and build take no executor option: they run the same way in both modes (timed in both).
``--steps ingest,transport`` (transport without cluster) first ingests planted labels (each
decoder row's nearest generating centre: 1,024 clusters per layer, ``saew ingest clusters``,
not timed), so transport can be measured without the 12-minute cluster step.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RELEASE = "gpt2-v5-synth"
MODES = {"serial": ["--executor", "local", "--workers", "1"], "ray": ["--executor", "ray"]}
# step -> (saew words and options after --release, whether it takes the executor options)
STEPS: dict[str, tuple[list[str], bool]] = {
    "ingest": (["ingest", "sae"], False),
    "match": (["match", "--method", "folded"], True),
    "random": (["match", "--method", "random"], True),
    "cluster": (["cluster", "--space", "decoder"], True),
    "transport": (["transport", "--space", "decoder"], True),
    "build": (["build", "--quiet"], False),
}


def synthetic_release(root: Path, n_layers: int, d_sae: int, d_in: int, seed: int = 0,
                      keep: float = 0.75, n_centres: int = 1024) -> list[Path]:
    """SAELens folders ``root/blocks.L.hook_resid_post`` of a chain of related layers."""
    from saew.sae.params import SAEParams
    from saew.sae.saelens import write_folder

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, d_in)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def unit(w: np.ndarray) -> np.ndarray:
        return w / np.linalg.norm(w, axis=1, keepdims=True)

    def draw(nf: int) -> np.ndarray:
        return unit(centres[rng.integers(0, n_centres, nf)]
                    + rng.standard_normal((nf, d_in)).astype(np.float32) / np.sqrt(d_in))

    folders, w = [], draw(d_sae)
    n_keep = int(keep * d_sae)
    for layer in range(n_layers):
        if layer:
            nxt = draw(d_sae)
            perm = rng.permutation(d_sae)
            nxt[:n_keep] = unit(w[perm[:n_keep]] + 0.5 * rng.standard_normal((n_keep, d_in)).astype(np.float32)
                                / np.sqrt(d_in))
            w = nxt[rng.permutation(d_sae)]
        w_enc = (w + 0.3 * rng.standard_normal((d_sae, d_in)).astype(np.float32) / np.sqrt(d_in)).T
        p = SAEParams(w_enc=np.ascontiguousarray(w_enc, np.float32),
                      b_enc=(-0.1 + 0.02 * rng.standard_normal(d_sae)).astype(np.float32),
                      w_dec=np.ascontiguousarray(w, np.float32), b_dec=np.zeros(d_in, np.float32),
                      architecture="topk", k=32, model="gpt2-small",
                      hook=f"blocks.{layer}.hook_resid_post")
        folders.append(write_folder(root / f"blocks.{layer}.hook_resid_post", p,
                                    metadata={"model_name": "gpt2-small",
                                              "hook_name": f"blocks.{layer}.hook_resid_post"}))
        np.save(root / f"labels_{layer}.npy", np.argmax(w @ centres.T, axis=1).astype(np.int32))
    return folders


def planted_labels(home: Path, root: Path, n_layers: int) -> None:
    """``saew ingest clusters`` of each layer's planted labels (``synthetic_release``'s
    labels_L.npy) in the decoder space."""
    for layer in range(n_layers):
        run_step(home, ["ingest", "clusters", str(root / f"labels_{layer}.npy"), "--release", RELEASE,
                        "--layer", str(layer), "--space", "decoder"])


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_step(home: Path, argv: list[str], with_cluster: bool = False) -> dict:
    """Run ``python -m saew --home HOME ARGV``; wall seconds and the peak RSS of its process tree
    (MB), with ``with_cluster`` also of this process's own Ray cluster (``--shared-ray``)."""
    import psutil

    env = dict(os.environ, SAEW_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "saew", "--home", str(home), *argv], env=env,
                             cwd=str(home.parent), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    peak, done = [0], threading.Event()
    me, step = psutil.Process(), psutil.Process(child.pid)

    def sample() -> None:
        while not done.is_set():
            rss = _tree_rss(me) - me.memory_info().rss if with_cluster else _tree_rss(step)
            peak[0] = max(peak[0], rss)
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = child.communicate()
    done.set()
    t.join()
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        raise SystemExit(f"saew {' '.join(argv)} failed ({child.returncode}):\n{err[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_mb": round(peak[0] / 2**20), "out": out.strip().splitlines()[:1]}


def start_ray(cpus: int) -> str:
    """A local Ray cluster of ``cpus`` CPUs owned by this process (stopped when it exits), for
    every Ray step to join; its address."""
    from saew.compute.executor import THREAD_VARS

    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    import ray

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**{v: "1" for v in THREAD_VARS}, "SAEW_PROGRESS": "0"}})
    return ray.get_runtime_context().gcs_address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-sae", type=int, default=32768)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (tasks in flight)")
    ap.add_argument("--modes", default="serial,ray")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one per step")
    ap.add_argument("--shared-ray", action="store_true",
                    help="start one local Ray cluster (ray start --head, --workers CPUs) for every Ray "
                         "step and stop it at the end, so no step pays the start-up")
    ap.add_argument("--root", default=None, help="keep the SAE folders and homes here (default: a temp dir)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    a = ap.parse_args()
    modes, steps = a.modes.split(","), a.steps.split(",")
    tmp = None if a.root else tempfile.mkdtemp(prefix="saew-scale-")
    root = Path(a.root or tmp)
    if a.shared_ray and "ray" in modes and not a.ray_address:
        a.ray_address = start_ray(a.workers)
    try:
        t0 = time.perf_counter()
        folders = synthetic_release(root / "saes", a.layers, a.d_sae, a.d_in)
        print(f"synthetic release: {a.layers} x {a.d_sae} x {a.d_in} in {time.perf_counter() - t0:.0f} s",
              flush=True)
        where = {"serial": MODES["serial"],
                 "ray": [*MODES["ray"], "--workers", str(a.workers)]
                 + (["--ray-address", a.ray_address] if a.ray_address else [])}
        fig: dict[str, dict[str, dict]] = {}
        for mode in modes:
            home = root / f"home-{mode}"
            shutil.rmtree(home, ignore_errors=True)
            fig[mode] = {}
            for step in steps:
                if step == "transport" and "cluster" not in steps:
                    planted_labels(home, root / "saes", a.layers)
                words, takes = STEPS[step]
                argv = [*words, *(map(str, folders) if step == "ingest" else [])]
                if step != "build":
                    argv += ["--release", RELEASE]
                argv += where[mode] if takes else []
                fig[mode][step] = r = run_step(home, argv, with_cluster=mode == "ray" and a.shared_ray)
                print(f"{mode:>6} {step:>9}: {r['wall_s']:8.1f} s  peak {r['peak_mb']:6d} MB", flush=True)
            fig[mode]["whole"] = {"wall_s": round(sum(r["wall_s"] for r in fig[mode].values()), 1),
                                  "peak_mb": max(r["peak_mb"] for r in fig[mode].values())}
        print(f"\n| step | {' | '.join(f'{m} s | {m} peak MB' for m in modes)}"
              + (" | serial / ray |" if {"serial", "ray"} <= set(modes) else " |"))
        print("|---" * (1 + 2 * len(modes) + ({"serial", "ray"} <= set(modes))) + "|")
        for step in [*steps, "whole"]:
            cells = [f"{fig[m][step]['wall_s']:.1f} | {fig[m][step]['peak_mb']}" for m in modes]
            ratio = (f" | {fig['serial'][step]['wall_s'] / max(fig['ray'][step]['wall_s'], 1e-9):.2f}x"
                     if {"serial", "ray"} <= set(modes) else "")
            print(f"| {step} | {' | '.join(cells)}{ratio} |")
        if a.out:
            Path(a.out).write_text(json.dumps({"shape": [a.layers, a.d_sae, a.d_in], "workers": a.workers,
                                               "figures": fig}, indent=2))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
