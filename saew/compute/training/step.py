"""``saew train``: one sparse autoencoder per layer, trained on residuals harvested in one pass.

The architectures and their steps are in ``compute.training.model``, the loop, input scaling
and resampling in ``compute.training.trainer``; this module reads the command line, harvests
the residuals once, trains the layers (through the executor: ``--executor local|ray``,
``--workers``, ``--device``) and writes SAELens folders, ``saes`` rows and ``training_log``.

Each (layer, hook point) SAE is a unit (``compute.units``: ``layer=L`` for the residual
stream, ``layer=L/mlp_out``, ``layer=L/attn_out`` for the modules): its folder, ``saes`` and
``features`` rows and ``training_log`` commit as soon as it is trained, so a failure or a kill
keeps the SAEs before it, and a re-run with the same parameters trains only the missing ones
(the model pass captures only the layers still to train). With ``--harvest`` the harvest is
one more unit at the end (it needs every layer: a re-run captures them all and encodes the
kept layers' tokens with their stored SAEs, exactly as training encodes its own).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from saew.compute.training.config import SELECTS, TrainConfig
from saew.compute.training.hooks import DEFAULT_HOOKS, Unit, check_releases, parse_hooks, units
from saew.compute.options import add_device_argument, add_executor_arguments
from saew.compute.training.trainer import train_sae
from saew.compute.units import layer_unit
from saew.errors import BadInput
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
    p.add_argument("--select-dtype", dest="select", default=TrainConfig.select, choices=SELECTS,
                   help="topk: the dtype each token's k features are chosen in while training "
                        "(values and gradients are float32): auto (default: bfloat16 on a CPU "
                        "with native bf16, about 1.3x faster training; else float32), float32 "
                        "(exact), bfloat16")
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
                       select=getattr(args, "select", TrainConfig.select), seed=seed).check()


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


def unit_name(u: Unit) -> str:
    """The unit of one SAE of a run: ``layer=L`` (residual stream) or ``layer=L/<point>``."""
    return layer_unit(u.layer) + ("" if u.point == RESID_POINT else f"/{u.point}")


def _stored_codes(lake, u: Unit, x: np.ndarray, token_ids: np.ndarray) -> tuple:
    """The codes of a kept unit's training tokens, encoded with its stored SAE exactly as
    ``train_sae`` encodes a new one's (``metrics.evaluate`` on the same weights)."""
    import torch

    from saew.compute.training.metrics import evaluate
    from saew.storage.saes import load_sae

    pieces: list = []
    evaluate(load_sae(lake, u.release, u.layer), torch.from_numpy(x).float().contiguous(),
             token_ids=token_ids, codes=pieces)
    return tuple(np.concatenate([q[i] for q in pieces]) for i in range(3))


def run(args, ctx) -> str:
    import shutil

    import torch

    from saew.sae import saelens as saelens_io
    from saew.compute.corpus import load_corpus
    from saew.compute.lm.load import load_model
    from saew.compute.lm.model import hook_outputs
    from saew.compute.options import executor_from_args
    from saew.compute.units import Units
    from saew.progress import progress
    from saew.storage.saes import saelens_folder, stage_saelens_folder, write_sae

    release = args.release
    if args.tokens is None or args.tokens <= 0:
        raise BadInput(f"--tokens {args.tokens}: must be positive")
    _config(args, None, ctx.seed)  # fail fast, before loading a model
    points = parse_hooks(getattr(args, "hooks", None))
    ex = executor_from_args(args)   # checks --executor, --workers and --device up front
    harvest = bool(getattr(args, "harvest", False))
    torch.set_num_threads(2)
    model = load_model(args.model)
    spec_ = model.spec
    layer_list = parse_layers(args.layers, spec_.n_layers)
    cfg = _config(args, spec_.d_model, ctx.seed)
    planned = units(release, points, layer_list)
    check_releases(ctx.lake, release, planned, layer_list, spec_.d_model, spec_.name, harvest)
    if harvest:
        from saew.compute.activations.codes import check_examples

        check_examples(getattr(args, "examples", 20))
    plan = Units(ctx, [unit_name(u) for u in planned])
    todo = [u for u in planned if unit_name(u) in plan.todo]
    kept = [u for u in planned if unit_name(u) not in plan.todo]
    releases = list(dict.fromkeys(u.release for u in planned))
    many = points != (RESID_POINT,)
    lines = [f"trained {len(todo)} {cfg.arch} SAE(s) (d_sae {cfg.d_sae}) for "
             f"{', '.join(map(repr, releases))} on {spec_.name}:",
             "  layer  tokens    fvu     l0  dead_frac  seconds" + ("  hook" if many else "")]
    # the model pass: the layers still to train (every layer with --harvest, which needs them all)
    capture = layer_list if harvest else sorted({u.layer for u in todo})
    metas: list | None = [] if harvest else None
    acts: dict = {}
    if capture:
        docs = load_corpus(args.corpus, ctx.seed)
        acts = hook_outputs(model, docs, args.tokens, capture, points, tokens=metas)
    del model
    token_ids = np.concatenate([b.token_ids for b in metas]) if metas else None
    coo: dict[str, dict[int, list]] = {}           # release -> layer -> [codes]
    if harvest:
        for u in kept:
            coo.setdefault(u.release, {})[u.layer] = [_stored_codes(ctx.lake, u, acts[(u.point, u.layer)].numpy(),
                                                                    token_ids)]
    for key in [k for k in acts if k not in {(u.point, u.layer) for u in todo}]:
        del acts[key]
    by_hook = {u.hook: u for u in todo}
    staging = {r: ctx.home / "saes" / r / f".staging-{ctx.run_id}" for r in releases}
    try:
        jobs = ((u.layer, acts.pop((u.point, u.layer)).numpy(), cfg, spec_.name, u.hook, token_ids,
                 ex.cfg.device) for u in todo)
        for layer, n_tokens, res, p, codes in progress(ex.map(_train_job, jobs, len(todo)),
                                                       total=len(todo), desc="train",
                                                       unit="SAE" if many else "layer"):
            u = by_hook[p.hook]
            if codes is not None:
                coo.setdefault(u.release, {})[layer] = [codes]
            tmp = staging[u.release] / u.hook
            saelens_io.write_folder(tmp, p, metadata={
                "saew_release": u.release, "saew_run_id": ctx.run_id, "training_tokens": int(res.log[-1]["tokens_seen"]),
                "dataset_path": str(args.corpus), "context_size": None, "prepend_bos": True})
            rows = res.log
            ctx.lake.write("training_log", {
                "step": [r["step"] for r in rows], "tokens_seen": [r["tokens_seen"] for r in rows],
                "mse": [r["mse"] for r in rows], "fvu": [r["fvu"] for r in rows],
                "l0": [r["l0"] for r in rows], "dead_frac": [r["dead_frac"] for r in rows],
            }, release=u.release, layer=layer)
            dest = saelens_folder(ctx.lake, u.release, u.hook)
            staged = stage_saelens_folder(ctx.lake, u.release, u.hook)  # committed with its rows
            saelens_io.replace_dir(tmp, staged)
            write_sae(ctx.lake, u.release, u.layer, p, source_format="saelens", source_path=str(dest),
                      source_sha256=saelens_io.sha256_file(staged / saelens_io.WEIGHTS_FILE),
                      run_id=ctx.run_id)
            plan.commit(unit_name(u))              # this SAE is in the lake now, whatever follows
            f = res.final
            lines.append(f"  {layer:5d}  {n_tokens:6d}  {f['fvu']:.3f}  {f['l0']:5.1f}  "
                         f"{f['dead_frac']:9.3f}  {res.seconds:7.1f}" + (f"  {u.point}" if many else ""))
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
    if plan.skipped:
        lines.append(plan.note())
    lines.append(f"  folders: {', '.join(str(ctx.home / 'saes' / r) for r in releases)}")
    return "\n".join(lines)
