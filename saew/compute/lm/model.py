"""A language model ready to run, with residual capture (forward hooks, no gradients).

``LoadedModel.iter_batches`` streams the residual stream of the requested layers in the
TransformerLens convention ``blocks.{L}.hook_resid_post`` (the output of block L) or
``blocks.{L}.hook_resid_pre`` (its input), captured with forward hooks, without gradients,
stopping the forward pass after the last block it needs. Special tokens ([CLS]/[SEP]/BOS)
and padding are fed to the model but never returned.  ``residuals`` stacks them per layer.
With ``modules`` (``mlp_out``, ``attn_out``) the same pass also captures each block's module
outputs, TransformerLens ``blocks.{L}.hook_mlp_out`` / ``hook_attn_out``: what the MLP and the
attention write into the residual stream (for a pre-LN block, resid_post = resid_pre +
attn_out + mlp_out); for Hugging Face models, forward hooks on the block's attention and MLP
submodules (``module_paths``).  ``hook_outputs`` stacks them per (point, layer).
Models are loaded by ``compute.lm.load``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from saew.errors import BadInput
from saew.storage.names import MODULE_POINTS, RESID_POINT

HOOK_RE = re.compile(r"blocks\.(\d+)\.hook_(resid_post|resid_pre)")
# a block's submodule whose output is the module's write into the residual stream, first match
# wins: LLaMA / Mistral / Qwen / GPT-2 / NeoX names, then BERT's (post-LN: the dense projection
# before its residual add and LayerNorm)
MODULE_PATHS = {
    "attn_out": ("self_attn", "attn", "attention.output.dense", "attention", "self_attention"),
    "mlp_out": ("mlp", "output.dense", "feed_forward", "ffn"),
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_layers: int
    d_model: int


@dataclass
class Batch:
    """One batch of harvested tokens; row r of every array describes the same token."""
    token_ids: np.ndarray            # int64, global running ids 0.. over the whole run
    doc: np.ndarray                  # int32, index of the document in ``docs``
    pos: np.ndarray                  # int32, position of the token within its document
    tokens: list[str]                # the token's text (with its leading whitespace)
    resid: dict[int, Any] = field(default_factory=dict)  # layer -> torch.Tensor [n, d_model] float32
    modules: dict[tuple[str, int], Any] = field(default_factory=dict)  # (mlp_out|attn_out, layer) -> [n, d_model]

    def __len__(self) -> int:
        return len(self.token_ids)


def point_hook(layer: int, point: str = RESID_POINT) -> str:
    """TransformerLens name of a hook point: ``blocks.{L}.hook_{point}``."""
    return f"blocks.{int(layer)}.hook_{point}"


def parse_hook(hook: str | None, layer: int) -> tuple[int, str]:
    """``blocks.{L}.hook_resid_post`` -> (L, 'resid_post'); empty -> (layer, 'resid_post')."""
    if not hook:
        return int(layer), "resid_post"
    m = HOOK_RE.fullmatch(hook)
    if not m:
        raise BadInput(f"hook {hook!r}: harvest supports blocks.L.hook_resid_post and "
                       f"blocks.L.hook_resid_pre only")
    return int(m.group(1)), m.group(2)


class LoadedModel:
    """A model ready to run: ``spec``, ``tokenizer`` and residual capture.

    ``kind`` is 'hf' (a transformers ``PreTrainedModel``, base model without head) or 'tl'
    (a TransformerLens ``HookedTransformer``).
    """

    def __init__(self, spec: ModelSpec, tokenizer, module, kind: str, prefix: list[int],
                 suffix: list[int], max_len: int | None = None):
        self.spec = spec
        self.max_len = max_len       # longest sequence (with special tokens) the model accepts
        self.tokenizer = tokenizer
        self.module = module
        self.kind = kind
        self.prefix = list(prefix)   # special ids put before every sequence (not returned)
        self.suffix = list(suffix)   # special ids put after every sequence (not returned)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self._blocks = _block_list(module, spec.n_layers) if kind == "hf" else None
        self.device = "cpu"          # where the module runs (``to``); captures come back on it

    def to(self, device: str) -> "LoadedModel":
        """Run the module on ``device`` (``cpu``, ``cuda``, ``mps``: ``compute.options.
        resolve_device``); each batch's ids and mask are copied there (from pinned host memory
        on CUDA) and the captured tensors stay there. ``cpu`` moves nothing: the same tensors."""
        import torch

        self.device = str(torch.device(device))
        self.module.to(self.device)
        return self

    def hook_name(self, layer: int, point: str = RESID_POINT) -> str:
        return point_hook(layer, point)

    # ------------------------------------------------------------------ tokens
    def sequences(self, docs: list[str], n_tokens: int, seq_len: int
                   ) -> Iterator[tuple[int, int, list[int], list[str]]]:
        """(doc, first pos, ids, token texts) chunks of at most seq_len - specials tokens."""
        if self.max_len and seq_len > self.max_len:
            raise BadInput(f"--seq-len {seq_len}: model {self.spec.name!r} accepts at most {self.max_len} tokens")
        room = seq_len - len(self.prefix) - len(self.suffix)
        if room < 1:
            raise BadInput(f"--seq-len {seq_len}: too short for the model's special tokens")
        left = n_tokens
        for d, text in enumerate(docs):
            if left <= 0:
                return
            ids, texts = self._tokenize(text)
            for start in range(0, len(ids), room):
                if left <= 0:
                    return
                stop = min(len(ids), start + room, start + left)
                left -= stop - start
                yield d, start, ids[start:stop], texts[start:stop]

    def _tokenize(self, text: str) -> tuple[list[int], list[str]]:
        """Token ids without special tokens, and each token's text span including the
        whitespace before it (so the texts of a document concatenate back to it)."""
        tok = self.tokenizer
        if getattr(tok, "is_fast", False):
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            ids = list(enc["input_ids"])
            ends = [int(e) for _, e in enc["offset_mapping"]]
            starts = [0] + ends[:-1]
            starts = np.maximum.accumulate(np.asarray(starts, dtype=np.int64)).tolist() if ends else []
            return ids, [text[s:e] if e > s else "" for s, e in zip(starts, ends)]
        ids = list(tok(text, add_special_tokens=False, verbose=False)["input_ids"])
        return ids, [tok.decode([i]) for i in ids]

    # ------------------------------------------------------------------ forward
    def iter_batches(self, docs: list[str], n_tokens: int, layers: list[int], batch_size: int = 8,
                     seq_len: int = 128, points: dict[int, str] | None = None,
                     modules: tuple[str, ...] = (),
                     skip: Callable[[int, int], bool] | None = None) -> Iterator[Batch]:
        """Run the model over the first ``n_tokens`` tokens of ``docs`` (fewer if the corpus is
        shorter), ``batch_size`` sequences of at most ``seq_len`` tokens at a time.

        ``resid[L]`` is ``blocks.{L}.hook_resid_post`` unless ``points[L] == 'resid_pre'``;
        ``modules[(m, L)]`` is ``blocks.{L}.hook_{m}`` for every m of ``modules`` and L of
        ``layers``. Memory holds one batch at a time. ``skip(first_token_id, n)``: True for a
        batch whose residuals are not needed (its tokens are yielded without running the model,
        ``resid`` and ``modules`` empty; e.g. the finished shards of a resumed harvest).
        """
        import torch

        if n_tokens <= 0:
            raise BadInput(f"--tokens {n_tokens}: must be positive")
        if batch_size <= 0:
            raise BadInput(f"--batch-size {batch_size}: must be positive")
        points = {int(L): (points or {}).get(int(L), "resid_post") for L in layers}
        for L, kind in points.items():
            if not 0 <= L < self.spec.n_layers:
                raise BadInput(f"layer {L}: model {self.spec.name!r} has layers 0..{self.spec.n_layers - 1}")
            if kind not in ("resid_post", "resid_pre"):
                raise BadInput(f"layer {L}: unsupported hook point {kind!r}")
        modules = tuple(dict.fromkeys(modules))
        for m in modules:
            if m not in MODULE_POINTS:
                raise BadInput(f"hook point {m!r}: module outputs are {', '.join(MODULE_POINTS)}")
        wanted = [(m, L) for m in modules for L in points]
        next_id = 0
        pending: list[tuple[int, int, list[int], list[str]]] = []

        def flush(chunk) -> Batch:
            nonlocal next_id
            lens = [len(c[2]) for c in chunk]
            n = sum(lens)
            raw = {}
            if skip is None or not skip(next_id, n):
                # inference mode around the forward only: a mode entered around the yields would
                # stay on in the caller's thread while it runs, and after it, if the generator is
                # abandoned (an exception in the caller)
                with torch.inference_mode():
                    raw = self._forward([c[2] for c in chunk], points, wanted)
            out = Batch(
                token_ids=np.arange(next_id, next_id + n, dtype=np.int64),
                doc=np.repeat(np.asarray([c[0] for c in chunk], np.int32), lens),
                pos=np.concatenate([np.arange(c[1], c[1] + len(c[2]), dtype=np.int32) for c in chunk]),
                tokens=[t for c in chunk for t in c[3]], resid={L: raw[L] for L in points if L in raw},
                modules={k: raw[k] for k in wanted if k in raw})
            next_id += n
            return out

        for seq in self.sequences(docs, n_tokens, seq_len):
            pending.append(seq)
            if len(pending) == batch_size:
                yield flush(pending)
                pending = []
        if pending:
            yield flush(pending)

    def _forward(self, seqs: list[list[int]], points: dict[int, str],
                 wanted: list[tuple[str, int]] | None = None) -> dict[Any, Any]:
        """Residuals at the requested points (key: layer) and the module outputs of ``wanted``
        (key: (point, layer)) of the real (non-special, non-pad) tokens, in sequence order, as
        float32 tensors [n, d_model]."""
        import torch

        width = max(len(s) for s in seqs) + len(self.prefix) + len(self.suffix)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        keep = torch.zeros((len(seqs), width), dtype=torch.bool)
        p = len(self.prefix)
        for r, s in enumerate(seqs):
            full = self.prefix + s + self.suffix
            ids[r, :len(full)] = torch.tensor(full, dtype=torch.long)
            mask[r, :len(full)] = 1
            keep[r, p:p + len(s)] = True
        wanted = list(wanted or [])
        if self.device != "cpu":
            cuda = self.device.startswith("cuda")
            ids, mask, keep = (t.pin_memory().to(self.device, non_blocking=True) if cuda
                               else t.to(self.device) for t in (ids, mask, keep))
        run = self._run_tl if self.kind == "tl" else self._run_hf
        raw = run(ids, mask, points, wanted)
        return {k: raw[k][keep].to(torch.float32).contiguous() for k in [*points, *wanted]}

    def _run_hf(self, ids, mask, points: dict[int, str],
                wanted: list[tuple[str, int]] | None = None) -> dict[Any, Any]:
        captured: dict[Any, Any] = {}
        wanted = list(wanted or [])
        last = max(L for L in points)
        handles = []

        def post(L):
            def hook(_mod, _inp, out):
                captured[L] = out[0] if isinstance(out, (tuple, list)) else out
                if L == last:
                    raise _Stop
            return hook

        def pre(L):
            def hook(_mod, args, kwargs):
                x = args[0] if args else kwargs.get("hidden_states")
                captured[L] = x
                if L == last and all(k == "resid_pre" or M < L for M, k in points.items()) \
                        and all(M < L for _, M in wanted):
                    raise _Stop
            return hook

        def module_out(key):
            def hook(_mod, _inp, out):
                captured[key] = out[0] if isinstance(out, (tuple, list)) else out
            return hook

        try:
            for key in wanted:   # registered first: a block's submodules finish before the block
                sub = module_of(self._blocks[key[1]], key[0])
                handles.append(sub.register_forward_hook(module_out(key)))
            for L, kind in points.items():
                blk = self._blocks[L]
                if kind == "resid_post":
                    handles.append(blk.register_forward_hook(post(L)))
                else:
                    handles.append(blk.register_forward_pre_hook(pre(L), with_kwargs=True))
            try:
                self.module(input_ids=ids, attention_mask=mask)
            except _Stop:
                pass
        finally:
            for h in handles:
                h.remove()
        return captured

    def _run_tl(self, ids, mask, points: dict[int, str],
                wanted: list[tuple[str, int]] | None = None) -> dict[Any, Any]:
        names: dict[str, Any] = {f"blocks.{L}.hook_{k}": L for L, k in points.items()}
        names.update({f"blocks.{L}.hook_{m}": (m, L) for m, L in wanted or []})
        captured: dict[Any, Any] = {}

        def hook(act, hook):
            captured[names[hook.name]] = act.detach()
            return act

        stop = max(L for L in points) + 1
        self.module.run_with_hooks(ids, return_type=None, stop_at_layer=stop,
                                   fwd_hooks=[(n, hook) for n in names])
        return captured


class _Stop(Exception):
    """Raised by a hook to end a forward pass once every requested layer is captured."""


def _block_list(module, n_layers: int):
    """The ModuleList of transformer blocks of a Hugging Face model."""
    import torch

    for name in ("encoder.layer", "layers", "model.layers", "transformer.h", "h", "gpt_neox.layers",
                 "decoder.layers", "model.decoder.layers"):
        obj = module
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n_layers:
            return obj
    found = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    if not found:
        raise BadInput(f"model {type(module).__name__}: cannot find its {n_layers} transformer blocks")
    return found[0]


def module_of(block, point: str):
    """The submodule of one Hugging Face block whose output is ``point`` (``mlp_out`` or
    ``attn_out``): the first of ``MODULE_PATHS[point]`` the block has; BadInput if none."""
    for path in MODULE_PATHS[point]:
        obj = block
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and callable(obj):
            return obj
    raise BadInput(f"hook point {point!r}: block {type(block).__name__} has none of the submodules "
                   f"{', '.join(MODULE_PATHS[point])}")


def residuals(model: LoadedModel, docs: list[str], n_tokens: int, layers: list[int],
              batch_size: int = 8, seq_len: int = 128, tokens: list | None = None) -> dict[int, Any]:
    """All ``blocks.{L}.hook_resid_post`` residuals of the first ``n_tokens`` tokens, stacked
    per layer: ``{L: torch.Tensor [n, d_model] float32}`` (n < n_tokens if the corpus is short).

    With a list ``tokens``, every batch's token metadata is appended to it (as ``Batch`` objects
    without residuals), so the same pass can also be recorded as a harvest."""
    out = hook_outputs(model, docs, n_tokens, layers, (RESID_POINT,), batch_size, seq_len, tokens)
    return {L: out[(RESID_POINT, L)] for L in layers}


def hook_outputs(model: LoadedModel, docs: list[str], n_tokens: int, layers: list[int],
                 points: tuple[str, ...] = (RESID_POINT,), batch_size: int = 8, seq_len: int = 128,
                 tokens: list | None = None) -> dict[tuple[str, int], Any]:
    """``blocks.{L}.hook_{point}`` for every point of ``points`` (``resid_post``, ``mlp_out``,
    ``attn_out``) and layer of ``layers``, from ONE pass over the first ``n_tokens`` tokens,
    stacked: ``{(point, L): torch.Tensor [n, d_model] float32}`` (n < n_tokens if the corpus is
    short). ``tokens`` as in ``residuals``."""
    import torch

    layers = [int(L) for L in layers]
    mods = tuple(p for p in dict.fromkeys(points) if p != RESID_POINT)
    keys = [(p, L) for p in dict.fromkeys(points) for L in layers]
    out = {k: torch.empty((n_tokens, model.spec.d_model), dtype=torch.float32) for k in keys}
    n = 0
    for b in model.iter_batches(docs, n_tokens, layers, batch_size=batch_size, seq_len=seq_len,
                                modules=mods):
        for p, L in keys:
            out[(p, L)][n:n + len(b)] = b.resid[L] if p == RESID_POINT else b.modules[(p, L)]
        if tokens is not None:
            tokens.append(Batch(b.token_ids, b.doc, b.pos, b.tokens))
        n += len(b)
    return {k: t[:n] for k, t in out.items()}
