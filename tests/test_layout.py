"""The import structure of ``saew/``: the data flows one way, and no module imports itself back.

    cli  ->  ingest | compute | report | sql  ->  storage  ->  sae  ->  errors, progress

Walks every module's imports (lazy ones inside functions included) with ``ast`` and fails on
an arrow against that flow, on ingest <-> compute, on anything but cli/__main__ importing
cli, and on a cycle between modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "saew"

# layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "sae": {"base"},
    "storage": {"sae", "base"},
    "ingest": {"storage", "sae", "base"},
    "compute": {"storage", "sae", "base"},
    "report": {"storage", "base"},
    "sql": {"storage", "base"},
    "cli": {"ingest", "compute", "report", "sql", "storage", "sae", "base"},
    "main": {"cli"},
}
BASE = {"saew.errors", "saew.progress", "saew"}


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "saew.__main__":
        return "main"
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ``saew`` that ``path`` imports (``from pkg import module`` counts the module)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "saew"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "saew":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in known else mod)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, m, known) for m, p in mods.items()}


def forbidden_arrows(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in g.items():
        lm = layer_of(m)
        for d in deps:
            ld = layer_of(d)
            if ld != lm and ld not in ALLOWED[lm]:
                bad.append(f"{m} -> {d} ({lm} may not import {ld})")
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for m in modules():
        assert layer_of(m) in ALLOWED, m


def test_imports_follow_the_flow():
    assert forbidden_arrows(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_walker_sees_forbidden_arrows_and_cycles(tmp_path):
    """The checks themselves: a planted bad arrow and a planted loop are reported."""
    g = {"saew.storage.lake": {"saew.compute.x"}, "saew.compute.x": {"saew.ingest.y"},
         "saew.ingest.y": {"saew.storage.lake"}}
    assert forbidden_arrows(g) == [
        "saew.compute.x -> saew.ingest.y (compute may not import ingest)",
        "saew.storage.lake -> saew.compute.x (storage may not import compute)"]
    assert cycles(g) == [["saew.compute.x", "saew.ingest.y", "saew.storage.lake"]]
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from saew.cli import main\n    from . import lake\n")
    assert imports(p, "saew.storage.m", {"saew.storage.lake", "saew.cli.main"}) == {
        "saew.cli.main", "saew.storage.lake"}


# modules still over the limit, being split (this set only shrinks)
NOT_YET_SPLIT: set[str] = set()


@pytest.mark.parametrize("limit", [400])
def test_modules_are_small(limit):
    """One job per module: about 400 lines at most."""
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > limit}
    assert set(big) <= NOT_YET_SPLIT


# step -> step imports still to be removed (this set only shrinks)
STEP_IMPORTS_LEFT: set[tuple[str, str]] = set()


def step_imports(g: dict[str, set[str]], steps: set[str]) -> set[tuple[str, str]]:
    """(step, other step) for each step module that imports another step module."""
    return {(m, d) for m in steps for d in g.get(m, ()) if d in steps and d != m}


def test_steps_do_not_import_other_steps():
    """A step reads what another step wrote through the lake (``storage.reads``), never by
    importing that step: the modules named in the command table import no other of them."""
    from saew.cli.commands import STEPS

    assert step_imports(graph(), {c.module for c in STEPS}) <= STEP_IMPORTS_LEFT


def test_the_walker_sees_step_imports():
    g = {"saew.compute.a": {"saew.compute.b", "saew.storage.reads"}, "saew.compute.b": set()}
    assert step_imports(g, {"saew.compute.a", "saew.compute.b"}) == {("saew.compute.a", "saew.compute.b")}


def test_bound_parameters_go_through_execute():
    """duckdb 1.5.5 prunes no Hive partition for parameters bound through the relational API
    (``con.sql(sql, params=...)``): such a lake query reads every layer's files (one SmolLM2
    layer's activations 2.0 s instead of 0.05 s). Bound parameters go through ``execute``."""
    bad = []
    for py in sorted(PKG.rglob("*.py")):
        for n in ast.walk(ast.parse(py.read_text())):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "sql"
                    and (len(n.args) > 1 or any(k.arg == "params" for k in n.keywords))):
                bad.append(f"{py.relative_to(PKG.parent)}:{n.lineno}")
    assert not bad, bad
