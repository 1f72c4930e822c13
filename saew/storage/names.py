"""The name lists of the warehouse, each defined once (contract sections 3, 5 and 6).

Spaces, match methods, the null model's method names and link strings. Writers, readers and
tests import them from here; dbt reads the same names from ``dbt_project.yml`` vars.
"""
from __future__ import annotations

import re

SPACES = ("decoder", "text")              # where vectors come from: decoder rows, description embeddings
DECODER_METHODS = ("folded", "folded-decoder", "unfolded", "cosine", "random")
TEXT_METHODS = ("cosine", "random")
NULL_METHOD = "random"                    # draw 0 of the null model; draws i >= 1 are "random.<i>"
IDENTITY_METHOD = "identity"              # evaluate's other baseline (feature i -> feature i)
BASELINE_METHODS = (NULL_METHOD, IDENTITY_METHOD)
_DRAW_RE = re.compile(rf"{NULL_METHOD}(?:\.([1-9][0-9]*))?")


def null_draw_method(i: int) -> str:
    """The method name of null draw ``i``: ``random`` for 0, ``random.<i>`` after it."""
    if i < 0:
        raise ValueError(f"null draw {i}: draws are numbered from 0")
    return NULL_METHOD if i == 0 else f"{NULL_METHOD}.{i}"


def null_draw_index(method: str) -> int | None:
    """The draw number of a null method name (``random`` -> 0, ``random.3`` -> 3), else None."""
    m = _DRAW_RE.fullmatch(method)
    return None if m is None else int(m.group(1) or 0)


def link_name(kind: str, space: str, method: str) -> str:
    """``match/<space>/<method>`` or ``transport/<space>/<solver>`` (contract section 5)."""
    return f"{kind}/{space}/{method}"

# module SAEs (issue 19, contract section 6): the hook points ``saew train --hooks`` trains
# (TransformerLens names ``blocks.L.hook_<point>``); the SAEs of a module point are stored as the
# sibling release ``<R>.<point>``, R keeps the residual ones.  ``flow_links.module`` names the
# three sources of a residual feature's predecessors; ``fct_feature_origin`` shortens them.
RESID_POINT = "resid_post"
MODULE_POINTS = ("mlp_out", "attn_out")
TRAIN_POINTS = (RESID_POINT, *MODULE_POINTS)
FLOW_MODULES = ("resid", *MODULE_POINTS)          # flow_links.module (resid = layer l's residual SAE)


def module_release(release: str, point: str) -> str:
    """The release holding the SAEs of hook point ``point`` trained with release ``release``:
    ``release`` itself for the residual stream, ``<release>.<point>`` for a module output."""
    if point == RESID_POINT:
        return release
    if point not in MODULE_POINTS:
        raise ValueError(f"hook point {point!r}: expected one of {', '.join(TRAIN_POINTS)}")
    return f"{release}.{point}"
