"""``saew harvest``: run a model over a corpus and record every layer's SAE activations.

For each batch of tokens the model's residual stream is captured at each SAE's hook
(``blocks.L.hook_resid_post`` by default, or ``hook_resid_pre``) and encoded with that
layer's SAE (``sae.encode.TorchSAE``: relu / jumprelu / topk, ``apply_b_dec_to_input``,
``layer_norm`` input normalisation). Only the non-zero activations are kept, as sparse COO
pieces per layer (token_id int64, feature int32, value float32); nothing dense outlives a batch.

Token shards (``--shard-tokens`` S, default 1,000,000): shard s holds the token ids
[s S, (s + 1) S). Each shard is a unit of work: as soon as the run has passed its last token,
its codes are written as ``activations`` partitions ``layer=L/shard=s`` of every layer and
committed (``Lake.commit_unit``, unit ``shard=s``) with the shard's token metadata
(``tokens`` partition ``shard=s``), so memory holds one shard of codes and tokens, never a
whole layer or the corpus. The first unit also drops the release's previous activations, activation sets,
examples and tokens of these layers, and the rows computed from them (co-activations,
correlations, communities, graphs, reconstruction, interventions: ``storage.lineage``; the
output says which went); a half-finished re-run is never mixed with the old one: its layers
have no ``activation_sets`` row until the run ends. The last unit writes ``activation_sets``
(n_tokens = every token seen, active or not) and ``examples`` (per feature the top
``--examples`` K and a few quantile samples, selected batch by batch as the run goes:
``compute.activations.examples``; the windows' tokens and activations are read back from the
committed shards, only those of the windows).

``--device auto|cpu|cuda|mps`` (``compute.options.resolve_device``): where the model's forward
and the SAE encodes run; the residuals stay on the device and only each batch's sparse codes
come back to the host (``codes.sparse_codes``). ``cuda`` where torch sees no GPU is a one-line
error before anything is read.

``--screen`` (TopK SAEs on the CPU, ``compute.activations.topk_screen``): ``auto`` selects each
token's k features from one bfloat16 GEMM with a rigorous error bound and computes only the
candidates' pre-activations exactly (float64 dot products rounded to float32), where the CPU
has native bf16; the codes are the TopK of the exact pre-activations (the float32 GEMM's
features up to ties within float32 rounding, values within a few float32 ulps of it).
``float32`` runs the plain float32 GEMM and torch.topk, the code before the option existed.

A re-run after a failure or a kill (same parameters) does only the missing shards: the
batches inside finished shards are not run through the model (``iter_batches(skip=...)``)
and those shards' codes are read back for the examples and the L0 figures, so the result is
the uninterrupted run's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from saew.compute.activations.codes import check_examples, sae_on, sparse_codes, write_layer_meta
from saew.compute.activations.examples import DEFAULT_EXAMPLES, ExampleSelector, TokenTable
from saew.compute.activations.shards import DEFAULT_SHARD_TOKENS, ShardBuffer, shard_unit, write_shard
from saew.compute.activations.topk_screen import SCREENS, ScreenedTopK, use_screen
from saew.compute.cpu import trim_heap
from saew.compute.options import add_device_argument, step_device
from saew.compute.units import Units
from saew.errors import BadInput
from saew.progress import progress
from saew.storage.lineage import drop_from_activations
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
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    device: str = "cpu"          # resolved ``--device``: cpu, cuda or mps
    screen: str = "auto"         # ``--screen``: how TopK codes are selected (topk_screen.SCREENS)


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
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
                   help=f"tokens per shard, the unit written and committed at once (default "
                        f"{DEFAULT_SHARD_TOKENS:,}); memory holds one shard's codes")
    p.add_argument("--screen", choices=SCREENS, default="auto",
                   help="TopK SAEs on the CPU: auto (default: screen with one bfloat16 GEMM where "
                        "the CPU computes bf16 natively, then exact float64 dot products for the "
                        "few candidates: the same codes; measured 1.2x faster encodes with AMX, the "
                        "same speed with AVX512-BF16 alone), bfloat16 "
                        "(always), float32 (the plain float32 GEMM and torch.topk)")
    add_device_argument(p)


def run(args, ctx) -> str:
    cfg = HarvestConfig(args.release, args.model, args.corpus, args.tokens, args.batch_size, args.seq_len,
                        getattr(args, "examples", DEFAULT_EXAMPLES),
                        getattr(args, "shard_tokens", DEFAULT_SHARD_TOKENS), step_device(args),
                        getattr(args, "screen", "auto"))
    return harvest(ctx, cfg)


def check_config(cfg: HarvestConfig) -> None:
    if cfg.tokens <= 0:
        raise BadInput(f"--tokens {cfg.tokens}: must be positive")
    if cfg.batch_size <= 0:
        raise BadInput(f"--batch-size {cfg.batch_size}: must be positive")
    if cfg.seq_len < 2:
        raise BadInput(f"--seq-len {cfg.seq_len}: must be at least 2")
    if cfg.shard_tokens <= 0:
        raise BadInput(f"--shard-tokens {cfg.shard_tokens}: must be positive")
    check_examples(cfg.examples)


def _committed_shard(lake, release: str, layer: int, shard: int) -> tuple[np.ndarray, ...]:
    """One committed shard of one layer as (token_id, feature, value), by token then feature."""
    t = lake.query("SELECT token_id, feature, value FROM activations WHERE release = ? AND layer = ? "
                   "AND shard = ? ORDER BY token_id, feature", [release, int(layer), int(shard)])
    return (t.column("token_id").to_numpy().astype(np.int64), t.column("feature").to_numpy().astype(np.int32),
            t.column("value").to_numpy().astype(np.float32))


def _lake_lookup(lake, release: str, layer: int):
    """(token_id, feature) -> the committed activation there (0 where none): the window
    activations of a layer's examples, read back from its shards in one join."""
    def at(token_id: np.ndarray, feature: np.ndarray) -> np.ndarray:
        out = np.zeros(len(token_id), np.float32)
        if not len(token_id):
            return out
        want = pa.table({"i": np.arange(len(token_id), dtype=np.int64),
                         "token_id": np.asarray(token_id, np.int64), "feature": np.asarray(feature, np.int32)})
        con = lake.connect(["activations"])
        try:
            con.register("want", want)
            got = con.execute("SELECT w.i, a.value FROM want w JOIN activations a ON a.token_id = w.token_id "
                              "AND a.feature = w.feature WHERE a.release = ? AND a.layer = ?",
                              [release, int(layer)]).fetchnumpy()
        finally:
            con.close()
        out[np.asarray(got["i"], np.int64)] = np.asarray(got["value"], np.float32)
        return out
    return at


def _lake_tokens(lake, release: str):
    """Sorted token ids -> a ``TokenTable`` of those among the release's committed tokens (the
    example windows' tokens, read back from the shards in one join)."""
    def at(token_id: np.ndarray) -> TokenTable:
        con = lake.connect(["tokens"])
        try:
            con.register("want", pa.table({"token_id": np.asarray(token_id, np.int64)}))
            t = con.execute("SELECT t.token_id, t.doc, t.pos, t.token FROM tokens t JOIN want w "
                            "ON t.token_id = w.token_id WHERE t.release = ? ORDER BY t.token_id",
                            [release]).to_arrow_table()
        finally:
            con.close()
        return TokenTable(t.column("token_id").to_numpy().astype(np.int64),
                          t.column("doc").to_numpy().astype(np.int32),
                          t.column("pos").to_numpy().astype(np.int32),
                          t.column("token").combine_chunks())
    return at


def _drop_previous(lake, release: str, layers: list[int]) -> None:
    """Stage, with the first shard, the removal of what the run replaces (see module docstring):
    the previous activations, activation sets, examples and tokens, and every row computed from
    them (``storage.lineage``, which notes what went)."""
    for L in layers:
        for table in ("activations", "activation_sets", "examples"):
            lake.delete_partition(table, release=release, layer=int(L))
    lake.delete_partition("tokens", release=release)
    drop_from_activations(lake, release, layers)


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
    model.to(cfg.device)
    saes = {L: sae_on(TorchSAE.from_params(p), cfg.device) for L, p in params.items()}
    saes = {L: ScreenedTopK.prepare(s) if use_screen(cfg.screen, cfg.device, s.architecture) else s
            for L, s in saes.items()}
    selectors = {L: ExampleSelector(p.d_sae, cfg.examples) for L, p in params.items()}

    # shards an interrupted earlier run of the same command finished: not run again, their codes
    # read back from the lake for the examples and the L0 figures
    units = Units(ctx, [shard_unit(s) for s in range(-(-cfg.tokens // cfg.shard_tokens))])
    done = np.asarray(sorted(int(u.split("=", 1)[1]) for u in units.skipped), np.int64)
    buf = ShardBuffer(layers, cfg.shard_tokens)
    n_active = dict.fromkeys(layers, 0)
    n_seen, n_shards = 0, 0
    for s in done:
        for L in layers:
            piece = _committed_shard(lake, cfg.release, L, int(s))
            selectors[L].update(*piece)
            n_active[L] += len(piece[0])

    def finished(first: int, n: int) -> bool:
        """Every token of the batch [first, first + n) is in a finished shard."""
        shards = np.arange(first // cfg.shard_tokens, (first + n - 1) // cfg.shard_tokens + 1)
        return bool(np.isin(shards, done).all())

    def flush(shards: list[int]) -> None:
        nonlocal n_shards
        for s in shards:
            codes, toks = buf.pop(s), buf.pop_tokens(s)
            if s in done:
                continue
            if n_shards == 0 and not len(done):
                _drop_previous(lake, cfg.release, layers)
            write_shard(lake, cfg.release, s, codes, toks)
            units.commit(shard_unit(s))
            n_shards += 1
            del codes, toks
            trim_heap()     # the shard's freed codes back to the OS: memory follows the shard

    bar = progress(total=cfg.tokens, desc="harvest", unit="tok")
    batches = model.iter_batches(docs, cfg.tokens, sorted(by_block), batch_size=cfg.batch_size,
                                 seq_len=cfg.seq_len, points=by_block,
                                 skip=finished if len(done) else None)
    with torch.inference_mode():
        for b in batches:
            if b.resid:
                new = ~np.isin(b.token_ids // cfg.shard_tokens, done) if len(done) else None
                for L, sae in saes.items():
                    piece = sparse_codes(sae, b.resid[points[L][0]], b.token_ids)
                    if new is not None:   # a batch straddling a finished shard: its part is kept
                        keep = new[np.searchsorted(b.token_ids, piece[0])]
                        piece = tuple(x[keep] for x in piece)
                    selectors[L].update(*piece)
                    buf.add(L, piece)
                    n_active[L] += len(piece[0])
            b.resid = {}
            buf.add_tokens(b.token_ids, b.doc, b.pos, b.tokens)
            n_seen += len(b)
            bar.update(len(b))
            flush(buf.complete(n_seen))
    bar.close()
    if n_seen == 0:
        raise BadInput(f"--corpus {cfg.corpus}: produced no tokens")
    flush(buf.remaining(n_seen))
    for L in layers:
        write_layer_meta(lake, cfg.release, L, ctx.run_id, n_seen, selectors.pop(L),
                         _lake_tokens(lake, cfg.release), _lake_lookup(lake, cfg.release, L))
    short = "" if n_seen == cfg.tokens else f" (the corpus ended before {cfg.tokens})"
    l0 = ", ".join(f"L{L}: {a / n_seen:.1f}" for L, a in n_active.items())
    note = units.note()
    return (f"harvested {n_seen} tokens{short} of {cfg.corpus} through {model.spec.name} into "
            f"release {cfg.release!r}, {len(layers)} layers in {n_shards + len(done)} shard(s) of at "
            f"most {cfg.shard_tokens} tokens; mean active features per token {l0}"
            + (f"\n{note}" if note else ""))
