"""``saew``: the command line. It wires the steps of ``ingest/`` and ``compute/`` to storage.

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
import os
import sys
import time
import uuid
from datetime import datetime, timezone

from . import catalog
from .context import Context
from .errors import BadInput, LockBusy
from .lake import Lake, check_release

VERSION = "0.1.0"

# (command words, module, one-line help, writes to the lake)
COMMANDS: list[tuple[tuple[str, ...], str, str, bool]] = [
    (("demo",), "warehouse.demo", "run the whole pipeline on the embedded default", False),
    (("ingest", "sae"), "ingest.sae", "ingest SAE weights (SAELens, OpenAI v5, Gemma Scope, dictionary_learning)", True),
    (("ingest", "descriptions"), "ingest.descriptions", "ingest Neuronpedia descriptions (.json, .jsonl, .jsonl.gz)", True),
    (("ingest", "clusters"), "ingest.results", "ingest cluster labels (.npy, .csv, .parquet)", True),
    (("ingest", "matches"), "ingest.results", "ingest a permutation between two layers", True),
    (("ingest", "transport"), "ingest.results", "ingest an optimal-transport plan between clusters", True),
    (("ingest", "activations"), "ingest.results", "ingest SAE activations (scipy sparse .npz or .parquet)", True),
    (("harvest",), "compute.harvest", "run a model over a corpus and record SAE activations", True),
    (("train",), "compute.train", "train one SAE per layer on harvested residuals", True),
    (("describe",), "compute.describe", "top-activating-token descriptions for undescribed features", True),
    (("embed",), "compute.embed", "sentence embeddings of descriptions", True),
    (("match",), "compute.match", "SAE Match between adjacent layers (exact assignment)", True),
    (("cluster",), "compute.cluster", "UMAP + HDBSCAN clusters per layer", True),
    (("transport",), "compute.transport", "optimal transport between clusters of adjacent layers", True),
    (("coactivation",), "compute.coactivation", "co-activation counts per layer", True),
    (("correlate",), "compute.correlate", "activation correlations between adjacent layers", True),
    (("communities",), "compute.communities", "communities of co-activation and correlation graphs", True),
    (("evaluate",), "compute.evaluate", "hidden-state reconstruction through matches", True),
    (("build",), "warehouse.build", "dbt build (models and data tests) on the catalog", True),
    (("query",), "warehouse.query", "run SQL (or a .sql file) on the catalog", False),
    (("export",), "warehouse.query", "write the marts as Parquet for notebooks and BI tools", False),
    (("plot",), "warehouse.report", "PNG plots of a release", True),
    (("report",), "warehouse.report", "one static HTML report of a release", True),
    (("status",), "warehouse.status", "releases, layers, tables and row counts", False),
]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None,
                   help="warehouse directory (default: $SAEW_HOME, else ./warehouse)")
    p.add_argument("--seed", type=int, default=0, help="fixes every random choice (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saew",
        description="SAE Evolution Warehouse: ingest SAEs, compute matches, clusters, transport and "
                    "activation statistics into a Parquet lake with a DuckDB catalog, and derive "
                    "evolution metrics with dbt.")
    parser.add_argument("--version", action="version", version=f"saew {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_, _ in COMMANDS:
        if len(words) == 2:
            if words[0] not in groups:
                gp = sub.add_parser(words[0], help=f"{words[0]} data produced elsewhere",
                                    description=f"saew {words[0]} KIND ...")
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


def execute(words: tuple[str, ...], args: argparse.Namespace) -> str | None:
    """Run one step; writing steps are locked, transactional and recorded in ``runs``."""
    module = args._module
    writes = next(w for ws, _, _, w in COMMANDS if ws == tuple(words))
    mod = importlib.import_module(module)
    runner = getattr(mod, f"run_{words[-1]}", None) or getattr(mod, "run")
    for opt in ("release", "other_release"):
        if getattr(args, opt, None) is not None:
            check_release(getattr(args, opt))
    lake = Lake(args.home)
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    ctx = Context(lake=lake, run_id=run_id, seed=args.seed)
    if not writes:
        return runner(args, ctx)
    params = {k: _jsonable(v) for k, v in vars(args).items() if not k.startswith("_")}
    with lake.write_lock():
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        with lake.transaction(run_id):
            out = runner(args, ctx)
            lake.write("runs", {
                "command": [" ".join(words)], "params": [json.dumps(params, sort_keys=True)],
                "started_at": [started], "finished_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
                "status": ["ok"], "version": [VERSION]}, run_id=run_id)
        catalog.refresh(lake)
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.time()
    try:
        out = execute(args._words, args)
    except BadInput as e:
        print(f"saew: error: {e}", file=sys.stderr)
        return 2
    except LockBusy as e:
        print(f"saew: error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("saew: interrupted; nothing was written", file=sys.stderr)
        return 130
    if out:
        print(out)
    if os.environ.get("SAEW_TIMING"):
        print(f"[{' '.join(args._words)}: {time.time() - t0:.1f}s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
