"""``saew train``: one sparse autoencoder per layer, trained on residuals harvested in one pass.

The architectures and their steps are in ``compute.training.model``, the loop, input scaling
and resampling in ``compute.training.trainer``; this module reads the command line, harvests
the residuals once, trains the layers (in worker processes) and writes SAELens folders,
``saes`` rows and ``training_log``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from saew.compute.training.config import TrainConfig
from saew.compute.training.hooks import DEFAULT_HOOKS, Unit, check_releases, parse_hooks, units
from saew.compute.options import add_device_argument, add_executor_arguments
from saew.compute.training.trainer import train_sae
from saew.errors import BadInput
from saew.sae.params import SAEParams
from saew.storage.names import RESID_POINT

EXPANSION = 4          # default d_sae = EXPANSION * d_model
DEFAULT_TOKENS = 32768


def parse_layers(spec_: str, n_layers: int) -> list[int]:
    """``A-B`` (inclusive), ``L`` or ``all`` -> layers, each in [0, n_layers)."""
    s = str(spec_).strip()
    try:
        if s == "all":
            return list(range(n_layers))
        if "-" in s[1:]:
            a, b = s.split("-", 1) if not s.startswith("-") else (None, None)
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(s)
    except (TypeError, ValueError):
        raise BadInput(f"--layers {spec_!r}: expected A-B, a single layer L, or all") from None
    if lo < 0 or hi < lo:
        raise BadInput(f"--layers {spec_!r}: expected 0 <= A <= B")
    if hi >= n_layers:
        raise BadInput(f"--layers {spec_!r}: the model has {n_layers} layers (0-{n_layers - 1})")
    return list(range(lo, hi + 1))


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release name for the trained SAEs")
    p.add_argument("--model", default="smollm2", help="minilm, smollm2 (default) or a local model path")
    p.add_argument("--corpus", default="builtin", help="builtin (default) or a local text file")
    p.add_argument("--layers", default="all", help="A-B, a single layer L, or all (default)")
    p.add_argument("--hooks", default=DEFAULT_HOOKS,
                   help="hook points to train an SAE on at every layer, from one model pass: "
                        "resid_post (default), mlp_out, attn_out, comma-separated; the mlp_out and "
                        "attn_out SAEs go to the sibling releases R.mlp_out and R.attn_out")
    p.add_argument("--arch", default="topk", help="topk (default), relu or jumprelu")
    p.add_argument("--d-sae", type=int, default=None,
                   help=f"SAE width (default {EXPANSION} x d_model)")
    p.add_argument("--k", type=int, default=32, help="active features per token for topk (default 32)")
    p.add_argument("--l1", type=float, default=TrainConfig.l1, help="relu L1 coefficient (default 2)")
    p.add_argument("--l0", type=float, default=TrainConfig.l0, help="jumprelu L0 coefficient (default 1)")
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                   help=f"residual tokens harvested per layer (default {DEFAULT_TOKENS})")
    p.add_argument("--epochs", type=float, default=TrainConfig.epochs,
                   help="passes over the tokens (default 5)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="Adam learning rate (default 4e-3)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="tokens per step (default 1024)")
    add_executor_arguments(p, "layers")
    add_device_argument(p)
    p.add_argument("--harvest", action="store_true",
                   help="also record the training pass as a harvest: encode the same residuals "
                        "with the new SAEs and write tokens, activations and activation_sets, "
                        "exactly as a following `saew harvest` over the same tokens would (one "
                        "model pass instead of two)")
    p.add_argument("--examples", type=int, default=20,
                   help="with --harvest: top activation examples kept per feature (default 20; 0: none)")


def _config(args, d_model: int | None, seed: int) -> TrainConfig:
    """The training config of the command line; without ``d_model`` (model not loaded yet) an
    unset ``--d-sae`` is not checked against ``--k``."""
    if args.d_sae is not None:
        d_sae = args.d_sae
    else:
        d_sae = EXPANSION * d_model if d_model else max(1, args.k)
    return TrainConfig(arch=args.arch, d_sae=d_sae, k=args.k, l1=args.l1, l0=args.l0, lr=args.lr,
                       batch_size=args.batch_size, epochs=args.epochs, steps=args.steps,
                       seed=seed).check()


def _train_job(layer: int, x: np.ndarray, cfg: TrainConfig, model_name: str, hook: str,
               token_ids: np.ndarray | None, device: str = "cpu"):
    """Train one layer's SAE (one unit, through the executor) on ``device`` and, with
    ``token_ids``, encode its own training tokens: (layer, n_tokens, TrainResult, params, codes
    or None)."""
    import torch

    res = train_sae(torch.from_numpy(x), cfg, desc=f"train layer {layer}", token_ids=token_ids,
                    device=device)
    codes, res.codes = res.codes, None
    return layer, int(x.shape[0]), res, replace(res.params, model=model_name, hook=hook), codes


def run(args, ctx) -> str:
    import shutil

    import torch

    from saew.sae import saelens as saelens_io
    from saew.compute.corpus import load_corpus
    from saew.compute.lm.load import load_model
    from saew.compute.lm.model import hook_outputs
    from saew.compute.options import executor_from_args
    from saew.progress import progress
    from saew.storage.saes import saelens_folder, stage_saelens_folder, write_sae

    release = args.release
    if args.tokens is None or args.tokens <= 0:
        raise BadInput(f"--tokens {args.tokens}: must be positive")
    _config(args, None, ctx.seed)  # fail fast, before loading a model
    points = parse_hooks(getattr(args, "hooks", None))
    ex = executor_from_args(args)   # checks --executor, --workers and --device up front
    torch.set_num_threads(2)
    model = load_model(args.model)
    spec_ = model.spec
    layer_list = parse_layers(args.layers, spec_.n_layers)
    cfg = _config(args, spec_.d_model, ctx.seed)
    todo = units(release, points, layer_list)
    check_releases(ctx.lake, release, todo, layer_list, spec_.d_model, spec_.name,
                   getattr(args, "harvest", False))
    if getattr(args, "harvest", False):
        from saew.compute.activations.codes import check_examples

        check_examples(getattr(args, "examples", 20))
    docs = load_corpus(args.corpus, ctx.seed)
    metas: list | None = [] if getattr(args, "harvest", False) else None
    acts = hook_outputs(model, docs, args.tokens, layer_list, points, tokens=metas)
    token_ids = np.concatenate([b.token_ids for b in metas]) if metas else None
    coo: dict[str, dict[int, list]] = {}           # release -> layer -> [codes]
    by_hook = {u.hook: u for u in todo}
    del model
    releases = list(dict.fromkeys(u.release for u in todo))
    staging = {r: ctx.home / "saes" / r / f".staging-{ctx.run_id}" for r in releases}
    many = points != (RESID_POINT,)
    lines = [f"trained {len(todo)} {cfg.arch} SAE(s) (d_sae {cfg.d_sae}) for "
             f"{', '.join(map(repr, releases))} on {spec_.name}:",
             "  layer  tokens    fvu     l0  dead_frac  seconds" + ("  hook" if many else "")]
    try:
        done: list[tuple[Unit, SAEParams]] = []
        jobs = ((u.layer, acts.pop((u.point, u.layer)).numpy(), cfg, spec_.name, u.hook, token_ids,
                 ex.cfg.device) for u in todo)
        for layer, n_tokens, res, p, codes in progress(ex.map(_train_job, jobs, len(todo)),
                                                       total=len(todo), desc="train",
                                                       unit="SAE" if many else "layer"):
            u = by_hook[p.hook]
            if codes is not None:
                coo.setdefault(u.release, {})[layer] = [codes]
            saelens_io.write_folder(staging[u.release] / u.hook, p, metadata={
                "saew_release": u.release, "saew_run_id": ctx.run_id, "training_tokens": int(res.log[-1]["tokens_seen"]),
                "dataset_path": str(args.corpus), "context_size": None, "prepend_bos": True})
            rows = res.log
            ctx.lake.write("training_log", {
                "step": [r["step"] for r in rows], "tokens_seen": [r["tokens_seen"] for r in rows],
                "mse": [r["mse"] for r in rows], "fvu": [r["fvu"] for r in rows],
                "l0": [r["l0"] for r in rows], "dead_frac": [r["dead_frac"] for r in rows],
            }, release=u.release, layer=layer)
            done.append((u, p))
            f = res.final
            lines.append(f"  {layer:5d}  {n_tokens:6d}  {f['fvu']:.3f}  {f['l0']:5.1f}  "
                         f"{f['dead_frac']:9.3f}  {res.seconds:7.1f}" + (f"  {u.point}" if many else ""))
        for u, p in done:
            dest = saelens_folder(ctx.lake, u.release, u.hook)
            staged = stage_saelens_folder(ctx.lake, u.release, u.hook)  # committed with its rows
            saelens_io.replace_dir(staging[u.release] / u.hook, staged)
            write_sae(ctx.lake, u.release, u.layer, p, source_format="saelens", source_path=str(dest),
                      source_sha256=saelens_io.sha256_file(staged / saelens_io.WEIGHTS_FILE),
                      run_id=ctx.run_id)
        if metas is not None:
            from saew.compute.activations.codes import write_harvest

            for r in releases:
                n_seen, _ = write_harvest(ctx.lake, r, ctx.run_id, metas, coo.get(r, {}), args.corpus,
                                          n_examples=getattr(args, "examples", 20))
            lines.append(f"  harvested the same {n_seen} tokens: tokens, activations, "
                         f"activation_sets, examples" + (f" of {len(releases)} releases" if many else ""))
    finally:
        for d in staging.values():
            shutil.rmtree(d, ignore_errors=True)
    lines.append(f"  folders: {', '.join(str(ctx.home / 'saes' / r) for r in releases)}")
    return "\n".join(lines)

