"""Switch one SAE feature off at its hook and read a downstream SAE's codes, batched in torch.

A row r is a token window (its last real token is the target) with one source feature s_r of
the source SAE, read at hook ``src`` (``blocks.l.hook_resid_post``, ``hook_resid_pre``,
``hook_mlp_out`` or ``hook_attn_out``). Each row runs twice in one forward pass:

  clean:    the model as it is;
  ablated:  at the source hook, at every real token t of the window,
                h'_t = h_t - f_s(h_t) * w_dec[s] * sigma_t
            where f_s is the source SAE's activation of feature s and sigma_t = std(h_t) + eps
            for ``layer_norm`` SAEs (the SAE decodes in the normalised space), else 1.
            This is decode(f with f_s := 0) + (h - decode(f)): the SAE's reconstruction error
            is kept, so only feature s changes.

The destination SAE encodes the model's tensor at hook ``dst`` (``blocks.m.hook_resid_post`` or
``hook_resid_pre``, at or after the source) at each row's target token; both code vectors are
returned dense, [rows, d_sae_dst] (clean, ablated). Special tokens are never edited. The
forward pass stops once the destination is captured.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from saew.compute.lm.model import module_of
from saew.errors import BadInput
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # torch loads only when a model runs, so `saew --help` stays fast
    from saew.sae.encode import TorchSAE

POINT_RE = re.compile(r"blocks\.(\d+)\.hook_(resid_post|resid_pre|mlp_out|attn_out)")


class _Stop(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


@dataclass(frozen=True)
class Point:
    """A hook point: the block and what is read there."""
    block: int
    kind: str    # resid_post | resid_pre | mlp_out | attn_out

    @property
    def name(self) -> str:
        return f"blocks.{self.block}.hook_{self.kind}"

    @property
    def order(self) -> tuple[int, int]:
        """Position in the forward pass: resid_pre < attn_out < mlp_out < resid_post of a block."""
        return self.block, ("resid_pre", "attn_out", "mlp_out", "resid_post").index(self.kind)


def parse_point(hook: str | None, layer: int, what: str) -> Point:
    """An SAE's hook name as a Point; an empty hook is ``blocks.{layer}.hook_resid_post``."""
    if not hook:
        return Point(int(layer), "resid_post")
    m = POINT_RE.fullmatch(hook)
    if not m:
        raise BadInput(f"{what}: hook {hook!r} is not blocks.L.hook_resid_post, hook_resid_pre, "
                       f"hook_mlp_out or hook_attn_out")
    return Point(int(m.group(1)), m.group(2))


@dataclass
class Windows:
    """A batch of token windows, right-padded: ids and mask [B, W] (special tokens included),
    ``real`` [B, W] True on the corpus tokens, ``last`` [B] the index of each row's target."""
    ids: "object"
    mask: "object"
    real: "object"
    last: "object"

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def make_windows(seqs: list[list[int]], prefix: list[int], suffix: list[int], pad_id: int) -> Windows:
    """Windows from token id lists (without special tokens); each row's target is its last token."""
    import torch

    lens = np.asarray([len(s) for s in seqs], dtype=np.int64)
    if (lens < 1).any():
        raise ValueError("every window needs at least one token")
    width = int(lens.max()) + len(prefix) + len(suffix)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    full = [prefix + list(s) + suffix for s in seqs]
    n_full = lens + len(prefix) + len(suffix)
    cols = np.arange(width)
    inside = cols[None, :] < n_full[:, None]
    ids[inside] = np.concatenate([np.asarray(f, dtype=np.int64) for f in full])
    p = len(prefix)
    real = (cols[None, :] >= p) & (cols[None, :] < (p + lens)[:, None])
    return Windows(torch.from_numpy(ids), torch.from_numpy(inside.astype(np.int64)),
                   torch.from_numpy(real), torch.from_numpy(p + lens - 1))


def ablate(h, sae: TorchSAE, features, coef, real):
    """h - coef * f_s(h) * w_dec[s] * sigma at the real tokens (see the module docstring).

    h [R, W, d]; features [R] (the source feature of each row); coef [R] (0 keeps the row
    clean, 1 ablates it); real [R, W] bool."""
    x, norm = sae.normalise(h)
    f = sae.encode_normalised(x)                                     # [R, W, d_sae]
    a = f.gather(-1, features.view(-1, 1, 1).expand(-1, f.shape[1], 1))  # [R, W, 1]
    delta = a * sae.w_dec[features].unsqueeze(1)                     # [R, W, d]
    if norm is not None:
        from saew.sae.encode import LN_EPS

        delta = delta * (norm[1] + LN_EPS)
    w = (coef.view(-1, 1, 1) * real.unsqueeze(-1)).to(h.dtype)
    return h - w * delta.to(h.dtype)


def intervene(model, win: Windows, src: Point, src_sae: TorchSAE, features, dst: Point,
              dst_sae: TorchSAE, branch: bool | None = None):
    """(clean codes, ablated codes) of the destination SAE at each row's target, [B, d_sae_dst].

    ``model`` is a ``compute.lm.model.LoadedModel``; ``features`` [B] int64 the source feature of
    each row. Two ways to run the clean and the ablated row, same result:

    * branch (a batch without padding): the B rows run once up to the source hook, which returns
      the 2B rows [h; h'] for the rest of the pass (the blocks before the hook are not run
      twice; no attention mask is needed since no row is padded);
    * twice: the 2B rows from the start (padded batches, or a model that does not take a batch
      that grows at the hook, e.g. one whose attention mask has the input's batch size).
    ``branch=None`` branches when the batch has no padding and falls back to twice if the
    model refuses.
    """
    import torch

    if dst.order <= src.order:
        raise BadInput(f"hook {dst.name} is not after {src.name}: nothing downstream to read")
    if dst.kind not in ("resid_post", "resid_pre"):
        raise BadInput(f"hook {dst.name}: the destination must be a residual hook")
    n = len(win)
    padded = not bool(win.mask.all())
    if branch is None:
        if not padded and id(model) not in _NO_BRANCH:
            try:
                return intervene(model, win, src, src_sae, features, dst, dst_sae, branch=True)
            except RuntimeError:   # shapes: this model's blocks want the input's batch size
                _NO_BRANCH.add(id(model))
        branch = False
    if branch and padded:
        raise ValueError("branching needs a batch without padding")
    two = lambda t: torch.cat([t, t])  # noqa: E731
    real, last, feats = two(win.real), two(win.last), two(features).long()
    coef = torch.cat([torch.zeros(n), torch.ones(n)])
    captured = {}

    def edit(h):
        if branch:   # B rows in, [h; h'] out
            return ablate(torch.cat([h, h]), src_sae, feats, coef, real)
        return ablate(h, src_sae, feats, coef, real)

    def capture(h):
        captured["x"] = h[torch.arange(h.shape[0]), last].to(torch.float32)

    ids, mask = (win.ids, None) if branch else (two(win.ids), two(win.mask))
    with torch.inference_mode():
        if model.kind == "tl":
            _run_tl(model, ids, src, dst, edit, capture)
        else:
            _run_hf(model, ids, mask, src, dst, edit, capture)
        codes = dst_sae.encode(captured["x"])
    return codes[:n], codes[n:]


# models (by id) whose blocks refused a batch that grows at the hook
_NO_BRANCH: set[int] = set()


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _replace_first(out, new):
    if isinstance(out, tuple):
        return (new,) + tuple(out[1:])
    if isinstance(out, list):
        return [new] + list(out[1:])
    return new


def _run_hf(model, ids, mask, src: Point, dst: Point, edit, capture) -> None:
    blocks = model._blocks
    for p in (src, dst):
        if not 0 <= p.block < len(blocks):
            raise BadInput(f"hook {p.name}: model {model.spec.name!r} has blocks 0..{len(blocks) - 1}")
    handles = []

    def post_edit(_m, _inp, out):
        return _replace_first(out, edit(_first(out)))

    def pre_edit(_m, args, kwargs):
        if args:
            return (edit(args[0]),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

    def post_capture(_m, _inp, out):
        capture(_first(out))
        raise _Stop

    def pre_capture(_m, args, kwargs):
        capture(args[0] if args else kwargs["hidden_states"])
        raise _Stop

    try:
        blk = blocks[src.block]
        if src.kind == "resid_pre":
            handles.append(blk.register_forward_pre_hook(pre_edit, with_kwargs=True))
        elif src.kind == "resid_post":
            handles.append(blk.register_forward_hook(post_edit))
        else:
            handles.append(module_of(blk, src.kind).register_forward_hook(post_edit))
        dblk = blocks[dst.block]
        if dst.kind == "resid_pre":
            handles.append(dblk.register_forward_pre_hook(pre_capture, with_kwargs=True))
        else:
            handles.append(dblk.register_forward_hook(post_capture))
        try:
            model.module(input_ids=ids, attention_mask=mask)
        except _Stop:
            pass
    finally:
        for h in handles:
            h.remove()


def _run_tl(model, ids, src: Point, dst: Point, edit, capture) -> None:
    def tl_edit(act, hook):
        return edit(act)

    def tl_capture(act, hook):
        capture(act)
        return act

    model.module.run_with_hooks(ids, return_type=None, stop_at_layer=dst.block + 1,
                                fwd_hooks=[(src.name, tl_edit), (dst.name, tl_capture)])
