"""``saew train --hooks``: which hook points of each layer get an SAE, and where each is stored.

A hook point is ``resid_post`` (the block's output, the residual stream), ``mlp_out`` or
``attn_out`` (what the block's MLP / attention writes into it; TransformerLens
``blocks.L.hook_mlp_out`` / ``hook_attn_out``). One model pass captures all of them
(``compute.lm.model.hook_outputs``); the SAE of (point, layer) is stored in release
``module_release(R, point)``: R for the residual stream, ``R.mlp_out`` / ``R.attn_out`` for the
modules (contract section 6), with its SAELens folder at ``<home>/saes/<that release>/<hook>/``.
"""
from __future__ import annotations

from dataclasses import dataclass

from saew.compute.lm.model import point_hook
from saew.errors import BadInput
from saew.storage.names import RESID_POINT, TRAIN_POINTS, module_release

DEFAULT_HOOKS = RESID_POINT


@dataclass(frozen=True)
class Unit:
    """One SAE to train: a hook point of a layer, its TransformerLens hook name and release."""
    point: str
    layer: int
    hook: str
    release: str


def parse_hooks(spec_: str | None) -> tuple[str, ...]:
    """``resid_post,mlp_out,attn_out`` -> the points in the order of ``TRAIN_POINTS`` (duplicates
    dropped); None -> ``resid_post``; an empty list or any other name -> BadInput."""
    names = [s.strip() for s in str(DEFAULT_HOOKS if spec_ is None else spec_).split(",") if s.strip()]
    bad = [n for n in names if n not in TRAIN_POINTS]
    if bad or not names:
        raise BadInput(f"--hooks {spec_!r}: unknown hook point {bad[0] if bad else ''!r} "
                       f"(expected a comma-separated list of {', '.join(TRAIN_POINTS)})")
    return tuple(p for p in TRAIN_POINTS if p in names)


def units(release: str, points: tuple[str, ...], layers: list[int]) -> list[Unit]:
    """Every (point, layer) SAE of a run, layer-major (a layer's points one after the other)."""
    return [Unit(p, int(L), point_hook(L, p), module_release(release, p))
            for L in layers for p in points]


def check_releases(lake, release: str, units_: list[Unit], layers: list[int], d_model: int,
                   model_name: str, harvest: bool) -> None:
    """BadInput before anything is trained: a release of the run (R or a sibling) whose other
    layers hold SAEs of another width, or, with ``--harvest``, SAEs at layers this run does not
    train (its harvest would not cover them)."""
    from saew.storage.lake import check_release

    for rel in dict.fromkeys(u.release for u in units_):
        check_release(rel)
        other = lake.query(
            "SELECT DISTINCT d_in FROM saes WHERE release = ? AND NOT list_contains(?, layer)",
            [rel, layers]).column("d_in").to_pylist()
        if other and other != [d_model]:
            raise BadInput(f"--release {release!r}: {rel!r} holds SAEs with d_in {other[0]}, "
                           f"but {model_name} has d_model {d_model}")
        if harvest:
            others = lake.query(
                "SELECT layer FROM saes WHERE release = ? AND NOT list_contains(?, layer) ORDER BY 1",
                [rel, layers]).column("layer").to_pylist()
            if others:
                raise BadInput(f"--harvest: release {rel!r} also holds SAEs at layers "
                               f"{', '.join(map(str, others))}, which this run does not train; "
                               f"train them too, or run saew harvest afterwards")
