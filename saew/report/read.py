"""Reading the catalog for the report: SQL on the dbt marts and ``rpt_`` models only, returned
as numpy columns or rows, plus the choices the report makes from them (which release layers,
which layer pairs, which link to show by default). Nothing here computes a metric: the numbers
come from dbt (models/report/), the thresholds from ``rpt_thresholds``."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from saew.errors import BadInput

DEFAULT_SANKEY_PAIRS = 4    # evenly spaced layer pairs when --pairs is not given
METHOD_PREFERENCE = ("folded", "folded-decoder", "unfolded", "cosine")
SOLVER_PREFERENCE = ("emd", "sinkhorn")


class Reader:
    """SQL on the catalog, returning columns as numpy arrays (NULL -> nan / None)."""

    def __init__(self, con):
        self.con = con
        rows = con.sql("SELECT DISTINCT table_name FROM information_schema.tables").fetchall()
        self.names = {r[0] for r in rows}

    def has(self, name: str) -> bool:
        return name in self.names

    def cols(self, sql: str, params: dict | None = None) -> dict[str, np.ndarray]:
        raw = self.con.execute(sql, params or None).fetchnumpy()
        out: dict[str, np.ndarray] = {}
        for k, v in raw.items():
            if isinstance(v, np.ma.MaskedArray):
                if v.dtype.kind in "iuf":
                    v = v.astype(float).filled(np.nan)
                elif v.dtype.kind == "b":
                    v = v.filled(False)
                else:
                    v = v.astype(object).filled(None)
            out[k] = np.asarray(v)
        return out

    def rows(self, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(sql, params or None)   # execute, not sql(params=): partitions prune
        return [d[0] for d in cur.description], cur.fetchall()

    def dicts(self, sql: str, params: dict | None = None) -> list[dict]:
        cols, rows = self.rows(sql, params)
        return [dict(zip(cols, r)) for r in rows]


def n_rows(c: dict[str, np.ndarray]) -> int:
    return len(next(iter(c.values()))) if c else 0


def missing(r: Reader, model: str, source: str) -> str | None:
    """A "no data" note when ``model`` is not in the catalog, else None. ``source`` names what
    it is made from: a mart (``fct_...``: named when it is absent too) or the step that writes
    its lake table (``saew cluster``)."""
    if r.has(model):
        return None
    if source.startswith(("fct_", "dim_")) and not r.has(source):
        return f"no data: {source} not in the catalog (run saew build)"
    if source.startswith("saew "):
        return f"no data: run {source}, then saew build ({model} is not in the catalog)"
    return f"no data: {model} not in the catalog (run saew build)"


@dataclass(frozen=True)
class Setup:
    release: str
    layers: list[int] | None            # None: rpt_release is not in the catalog (never built)
    pairs: list[tuple[int, int]]        # Sankey pairs
    out: Path
    thresholds: dict = field(default_factory=dict)

    def var(self, name: str) -> str:
        """A dbt var as the build used it (rpt_thresholds), for captions."""
        v = self.thresholds.get(name)
        return f"var {name}" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def release_layers(r: Reader, release: str) -> list[int] | None:
    """The release's layers from rpt_release; None when the catalog was never built; bad input
    when the release has no SAE."""
    if not r.has("rpt_release"):
        return None
    layers = [int(l) for (l,) in r.rows("SELECT layer FROM rpt_release WHERE release = $r ORDER BY layer",
                                        {"r": release})[1]]
    if not layers:
        raise BadInput(f"--release {release!r}: no SAE ingested for this release")
    return layers


def thresholds(r: Reader) -> dict:
    if not r.has("rpt_thresholds"):
        return {}
    rows = r.dicts("SELECT * FROM rpt_thresholds")
    return rows[0] if rows else {}


def evenly(values: Sequence, k: int) -> list:
    """At most k values, evenly spaced, first and last included."""
    if len(values) <= k:
        return list(values)
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]


def parse_pairs(text: str | None, layers: list[int], release: str) -> list[tuple[int, int]]:
    """``"5-6,8-9"`` -> [(5, 6), (8, 9)]; each pair must be adjacent ingested layers."""
    adjacent = list(zip(layers[:-1], layers[1:]))
    if text is None:
        return evenly(adjacent, DEFAULT_SANKEY_PAIRS)
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", part)
        if not m:
            raise BadInput(f"--pairs {text!r}: expected layer pairs like 5-6,8-9, got {part!r}")
        pair = (int(m.group(1)), int(m.group(2)))
        if pair not in adjacent:
            raise BadInput(f"--pairs {text!r}: {pair[0]}-{pair[1]} is not a pair of adjacent layers of "
                           f"release {release!r} (layers: {', '.join(map(str, layers))})")
        if pair not in out:
            out.append(pair)
    return out


@dataclass(frozen=True)
class Link:
    """A link as the marts describe it (columns, never parsed from its name)."""
    name: str
    kind: str
    space: str
    method: str


def links_of(r: Reader, model: str, release: str, where: str = "") -> list[tuple[str, Link]]:
    """(cluster_space, Link) pairs present in ``model`` for the release."""
    rows = r.rows(f"SELECT DISTINCT cluster_space, link, link_kind, link_space, link_method FROM {model} "
                  f"WHERE release = $r {where} ORDER BY ALL", {"r": release})[1]
    return [(cs, Link(l, k, sp, m)) for cs, l, k, sp, m in rows]


def link_order(links: Sequence[Link], space: str | None = None) -> list[Link]:
    """Links in the order the report shows them: match before transport, the link's own space
    first, then the preferred method/solver, then by name."""
    def key(l: Link):
        prefs = METHOD_PREFERENCE if l.kind == "match" else SOLVER_PREFERENCE
        return (l.kind != "match", l.space != space, prefs.index(l.method) if l.method in prefs else len(prefs),
                l.name)
    return sorted(links, key=key)


def headline(links: Sequence[tuple[str, Link]]) -> tuple[str, Link | None]:
    """The (cluster space, link) a section shows by default: decoder clusters when present,
    through their space's preferred match, else its preferred transport."""
    spaces = list(dict.fromkeys(cs for cs, _ in links))
    space = "decoder" if "decoder" in spaces else spaces[0]
    ls = [l for cs, l in links if cs == space]
    return space, preferred(ls, "match", space) or preferred(ls, "transport", space)


def preferred(links: Sequence[Link], kind: str, space: str | None) -> Link | None:
    """The link of a kind drawn by default: same space first, then the preferred method/solver."""
    cands = [l for l in links if l.kind == kind]
    return link_order(cands, space)[0] if cands else None
