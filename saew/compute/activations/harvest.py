"""``saew harvest``: run a model over a corpus and record every layer's SAE activations.

For each batch of tokens the model's residual stream is captured at each SAE's hook
(``blocks.L.hook_resid_post`` by default, or ``hook_resid_pre``) and encoded with that
layer's SAE (``sae.encode.TorchSAE``: relu / jumprelu / topk, ``apply_b_dec_to_input``,
``layer_norm`` input normalisation). Only the non-zero activations are kept, as sparse COO
pieces per layer (token_id int64, feature int32, value float32); nothing dense outlives a batch.
Writes ``tokens`` (one partition per release), ``activations`` (one partition per layer, all
non-zero values), ``activation_sets`` (n_tokens = every token seen, active or not) and
``examples`` (per feature the top ``--examples`` K and a few quantile samples, selected batch by
batch as the run goes: ``compute.activations.examples``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saew.compute.activations.codes import check_examples, sparse_rows, write_harvest
from saew.compute.activations.examples import DEFAULT_EXAMPLES, ExampleSelector
from saew.errors import BadInput
from saew.progress import progress
from saew.storage.saes import load_sae, require_release


@dataclass(frozen=True)
class HarvestConfig:
    release: str
    model: str
    corpus: str
    tokens: int
    batch_size: int = 8
    seq_len: int = 128
    examples: int = DEFAULT_EXAMPLES


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose SAEs encode the residuals")
    p.add_argument("--model", required=True,
                   help="minilm, smollm2, a local Hugging Face folder or a TransformerLens name")
    p.add_argument("--corpus", required=True, help="builtin, or a .txt / .jsonl / .parquet file")
    p.add_argument("--tokens", type=int, required=True, help="number of tokens to run")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                   help=f"top activation examples kept per feature (default {DEFAULT_EXAMPLES}; 0: none)")


def run(args, ctx) -> str:
    cfg = HarvestConfig(args.release, args.model, args.corpus, args.tokens, args.batch_size, args.seq_len,
                        getattr(args, "examples", DEFAULT_EXAMPLES))
    return harvest(ctx, cfg)


def check_config(cfg: HarvestConfig) -> None:
    if cfg.tokens <= 0:
        raise BadInput(f"--tokens {cfg.tokens}: must be positive")
    if cfg.batch_size <= 0:
        raise BadInput(f"--batch-size {cfg.batch_size}: must be positive")
    if cfg.seq_len < 2:
        raise BadInput(f"--seq-len {cfg.seq_len}: must be at least 2")
    check_examples(cfg.examples)


def harvest(ctx, cfg: HarvestConfig, model=None) -> str:
    """Run ``cfg.model`` (or an already loaded ``compute.lm.model.LoadedModel``) over the corpus."""
    import torch

    from saew.compute.corpus import load_corpus
    from saew.sae.encode import TorchSAE
    from saew.compute.lm.load import load_model
    from saew.compute.lm.model import parse_hook

    check_config(cfg)
    lake = ctx.lake
    layers = require_release(lake, cfg.release)
    params = {L: load_sae(lake, cfg.release, L) for L in layers}
    docs = load_corpus(cfg.corpus, seed=ctx.seed)
    model = model if model is not None else load_model(cfg.model)
    points: dict[int, tuple[int, str]] = {}  # SAE layer -> (model block, hook kind)
    for L, p in params.items():
        if p.d_in != model.spec.d_model:
            raise BadInput(f"--release {cfg.release} layer {L}: SAE d_in {p.d_in} != d_model "
                           f"{model.spec.d_model} of model {model.spec.name!r}")
        block, kind = parse_hook(p.hook, L)
        if not 0 <= block < model.spec.n_layers:
            raise BadInput(f"--release {cfg.release} layer {L}: hook {p.hook or block!r} is outside "
                           f"model {model.spec.name!r}'s blocks 0..{model.spec.n_layers - 1}")
        points[L] = (block, kind)
    # the model captures one tensor per block; two SAEs on the same block must share the hook kind
    by_block: dict[int, str] = {}
    for L, (block, kind) in points.items():
        if by_block.setdefault(block, kind) != kind:
            raise BadInput(f"--release {cfg.release}: block {block} is hooked both at resid_pre and "
                           f"resid_post; harvest those SAEs in separate releases")
    saes = {L: TorchSAE.from_params(p) for L, p in params.items()}
    selectors = {L: ExampleSelector(p.d_sae, cfg.examples) for L, p in params.items()}

    coo: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {L: [] for L in layers}
    metas: list = []
    bar = progress(total=cfg.tokens, desc="harvest", unit="tok")
    batches = model.iter_batches(docs, cfg.tokens, sorted(by_block), batch_size=cfg.batch_size,
                                 seq_len=cfg.seq_len, points=by_block)
    with torch.inference_mode():
        for b in batches:
            metas.append(b)
            for L, sae in saes.items():
                piece = sparse_rows(sae.encode(b.resid[points[L][0]]), b.token_ids)
                selectors[L].update(*piece)
                coo[L].append(piece)
            b.resid = {}
            bar.update(len(b))
    bar.close()
    n_seen, n_active = write_harvest(lake, cfg.release, ctx.run_id, metas, coo, cfg.corpus, selectors)
    short = "" if n_seen == cfg.tokens else f" (the corpus ended before {cfg.tokens})"
    l0 = ", ".join(f"L{L}: {a:.1f}" for L, a in n_active.items())
    return (f"harvested {n_seen} tokens{short} of {cfg.corpus} through {model.spec.name} into "
            f"release {cfg.release!r}, {len(layers)} layers; mean active features per token {l0}")
