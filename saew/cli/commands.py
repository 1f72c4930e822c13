"""The command table: which module serves which ``saew`` words, its parser and its runner.

Every step module defines ``add_arguments(parser)`` and ``run(args, ctx) -> str | None``
(the text to print on success) and imports its heavy dependencies lazily, so ``saew --help``
stays fast. A writing step runs under the writer lock inside one lake transaction; on
success a ``runs`` row is written with it and the catalog views are refreshed. ``BadInput``
anywhere leaves the lake untouched and exits 2 with one line on stderr.
"""
from __future__ import annotations

import argparse
import importlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from saew.errors import BadInput
from saew.storage import catalog
from saew.storage.context import Context
from saew.storage.lake import Lake, RunInfo, check_release, resume_key

VERSION = "0.1.0"


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]   # e.g. ("ingest", "sae")
    module: str              # defines add_arguments[_<word>](p) and run[_<word>](args, ctx)
    help: str
    writes: bool             # runs under the writer lock, in one lake transaction, with a runs row


# the steps (``saew demo`` is added by saew.cli.main, since it runs these)
STEPS: list[Command] = [Command(*c) for c in [
    (("ingest", "sae"), "saew.ingest.sae", "ingest SAE weights (SAELens, OpenAI v5, Gemma Scope, dictionary_learning, sparsify, or a snapshot folder)", True),
    (("ingest", "descriptions"), "saew.ingest.descriptions", "ingest Neuronpedia descriptions (.json, .jsonl, .jsonl.gz)", True),
    (("ingest", "clusters"), "saew.ingest.results", "ingest cluster labels (.npy, .csv, .parquet)", True),
    (("ingest", "matches"), "saew.ingest.results", "ingest a permutation between two layers", True),
    (("ingest", "transport"), "saew.ingest.results", "ingest an optimal-transport plan between clusters", True),
    (("ingest", "activations"), "saew.ingest.results", "ingest SAE activations (scipy sparse .npz or .parquet)", True),
    (("harvest",), "saew.compute.activations.harvest", "run a model over a corpus and record SAE activations", True),
    (("train",), "saew.compute.training.step", "train one SAE per layer on harvested residuals", True),
    (("describe",), "saew.compute.text.describe", "top-activating-token descriptions for undescribed features", True),
    (("embed",), "saew.compute.text.embed", "sentence embeddings of descriptions", True),
    (("match",), "saew.compute.matching.step", "SAE Match between adjacent layers (exact assignment)", True),
    (("cluster",), "saew.compute.clustering.step", "clusters per layer that beat a null (UMAP + HDBSCAN, or Leiden)", True),
    (("transport",), "saew.compute.clustering.transport", "optimal transport between clusters of adjacent layers", True),
    (("coactivation",), "saew.compute.activations.coactivation", "co-activation counts per layer", True),
    (("correlate",), "saew.compute.activations.correlate", "activation correlations between adjacent layers", True),
    (("communities",), "saew.compute.activations.communities", "communities of co-activation and correlation graphs", True),
    (("evaluate",), "saew.compute.matching.evaluate", "hidden-state reconstruction through matches", True),
    (("flow",), "saew.compute.flow.step", "feature flow: each residual feature's top predecessors by decoder cosine in the layer before and the block's MLP and attention SAEs", True),
    (("verify",), "saew.compute.causal.step", "causal checks of links: switch a source feature off, measure its target downstream", True),
    (("build",), "saew.sql.build", "dbt build (models and data tests) on the catalog", True),
    (("query",), "saew.sql.query", "run SQL (or a .sql file) on the catalog", False),
    (("export",), "saew.sql.query", "write the marts as Parquet for notebooks and BI tools", False),
    (("plot",), "saew.report.step", "PNG plots of a release", True),
    (("report",), "saew.report.step", "one static HTML report of a release", True),
    (("browse",), "saew.report.browse.step", "static feature browser of a release (pages and search)", True),
    (("status",), "saew.sql.status", "releases, layers, tables and row counts", False),
]]


HOME_HELP = "warehouse directory (default: $SAEW_HOME, else ./saew-home)"


def _common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a --home after the command words overrides one before them, and neither
    # resets the other (``saew --home DIR status`` and ``saew status --home DIR`` are the same)
    p.add_argument("--home", default=argparse.SUPPRESS, help=HOME_HELP)
    p.add_argument("--seed", type=int, default=0, help="fixes every random choice (default 0)")


def build_parser(commands: list[Command] = STEPS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saew",
        description="SAE Evolution Warehouse: ingest SAEs, compute matches, clusters, transport and "
                    "activation statistics into a Parquet lake with a DuckDB catalog, and derive "
                    "evolution metrics with dbt.")
    parser.add_argument("--version", action="version", version=f"saew {VERSION}")
    parser.add_argument("--home", default=None, help=HOME_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for c in commands:
        words, module, help_ = c.words, c.module, c.help
        if len(words) == 2:
            if words[0] not in groups:
                gp = sub.add_parser(words[0], help=f"{words[0]} data produced elsewhere",
                                    description=f"saew {words[0]} KIND ...")
                gp.add_argument("--home", default=argparse.SUPPRESS, help=HOME_HELP)
                groups[words[0]] = gp.add_subparsers(dest="kind", metavar="KIND", required=True)
            p = groups[words[0]].add_parser(words[1], help=help_, description=help_)
        else:
            p = sub.add_parser(words[0], help=help_, description=help_)
        _common(p)
        mod = importlib.import_module(module)
        adder = getattr(mod, f"add_arguments_{words[-1]}", None) or getattr(mod, "add_arguments")
        adder(p)
        p.set_defaults(_words=words, _module=module)
    return parser


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def execute(words: tuple[str, ...], args: argparse.Namespace,
            commands: list[Command] = STEPS) -> str | None:
    """Run one step; writing steps are locked, transactional and recorded in ``runs``.

    A writing step commits in units (``ctx.lake.commit_unit``) and once at its end; each
    commit writes the run's ``runs`` row (status 'partial' with the units so far, then 'ok').
    The catalog is refreshed after each commit; a refresh that cannot run (a full disk) never
    fails the committed command: the next open rebuilds it. Lines the lake noted (what a
    re-ingest dropped) follow the step's output.
    """
    module = args._module
    writes = next(c.writes for c in commands if c.words == tuple(words))
    mod = importlib.import_module(module)
    runner = getattr(mod, f"run_{words[-1]}", None) or getattr(mod, "run")
    for opt in ("release", "other_release"):
        if getattr(args, opt, None) is not None:
            check_release(getattr(args, opt))
    lake = Lake(args.home)
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    params = json.dumps({k: _jsonable(v) for k, v in vars(args).items() if not k.startswith("_")},
                        sort_keys=True)
    ctx = Context(lake=lake, run_id=run_id, seed=args.seed, command=" ".join(words),
                  params_key=resume_key(params))
    if not writes:
        return runner(args, ctx)
    try:
        with lake.write_lock(release=getattr(args, "release", None)):
            run = RunInfo(command=" ".join(words), params=params, version=VERSION,
                          started_at=datetime.now(timezone.utc).replace(tzinfo=None))
            lake.after_commit = catalog.refresh_quietly
            with lake.transaction(run_id, run=run):
                out = runner(args, ctx)
    except OSError as e:
        if not _disk_full(e):
            raise
        raise BadInput(f"{lake.home}: no space left on the device; the unfinished work was not "
                       f"written (free some space and run the command again)") from None
    if lake.notes:
        out = "\n".join([*([out] if out else []), *lake.notes])
    return out


def _disk_full(e: OSError) -> bool:
    """An OSError of a full disk or quota, also as pyarrow reports it (errno in the text)."""
    import errno

    return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "No space left" in str(e) \
        or "errno 28" in str(e).lower()
