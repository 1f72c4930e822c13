"""``saew ingest sae PATH... --release R``: SAE weights from SAELens, OpenAI v5, Gemma Scope,
dictionary_learning and EleutherAI sparsify checkpoints into ``saes`` + ``features``.

Each PATH (a folder or a file) is one SAE layer, or a downloaded snapshot folder holding several
(``ingest.formats.snapshot``: every SAE under it is ingested, one per layer; ``--width`` /
``--average-l0`` choose among Gemma Scope widths and L0s). ``--format auto`` detects by the
files present: ``cfg.json`` + ``sae_weights.safetensors`` -> saelens; ``cfg.json`` +
``sae.safetensors`` -> sparsify; ``params.npz`` (or any ``.npz``) -> gemmascope; ``ae.pt`` +
``config.json`` -> dictionary_learning; another ``.pt`` -> openai.
The layer is ``--layer``, else what the format says (SAELens hook name / hook_point_layer /
hook_layer, Gemma Scope ``layer_N``, dictionary_learning ``trainer.layer``, OpenAI ``N.pt`` /
``v5_32k_layer_N.pt``, sparsify hookpoint folder ``layers.N``), else the layer in ``--hook``;
otherwise exit 2. ``--model``/``--hook`` override or fill the
model and hook; the default hook is ``blocks.{L}.<site>`` (``hook_resid_post`` unless the
format names another site).

SAEs are read, validated (``ingest.validate``: floating-point weights, declared sizes against the
file, shapes against the config, finite values, layer in int32, k in 1..d_sae, thresholds >= 0,
one d_in per release) and
staged one at a time, so memory stays bounded by about two copies of one SAE; everything is
committed together at the end, or nothing if any PATH is bad.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from saew.errors import BadInput
from saew.sae.saelens import CFG_FILE, WEIGHTS_FILE
from saew.storage.saes import write_sae

from saew.ingest import validate
from saew.ingest.formats import snapshot, sparsify
from saew.ingest.formats.raw import Loaded, layer_from_hook

FORMATS = ("auto", "saelens", "openai", "gemmascope", "dictionary_learning", "sparsify")


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="SAE folders or files, one per layer")
    p.add_argument("--release", required=True, help="release name")
    p.add_argument("--layer", type=int, default=None, help="layer (only with one PATH)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="checkpoint format (default: auto)")
    p.add_argument("--model", default=None, help="model name (overrides the file's)")
    p.add_argument("--hook", default=None, help="hook name (overrides the file's)")
    p.add_argument("--width", default=None,
                   help="in a snapshot folder: the Gemma Scope width to take (e.g. 16k)")
    p.add_argument("--average-l0", default=None,
                   help="in a snapshot folder: the Gemma Scope average L0 to take (e.g. 71)")


def detect(path: Path) -> str:
    """The format of one PATH, by the files present."""
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / CFG_FILE).exists() and (path / WEIGHTS_FILE).exists():
            return "saelens"
        if (path / sparsify.CFG_FILE).exists() and (path / sparsify.WEIGHTS_FILE).exists():
            return "sparsify"
        if (path / "params.npz").exists():
            return "gemmascope"
        if (path / "ae.pt").exists() and (path / "config.json").exists():
            return "dictionary_learning"
        if len(list(path.glob("*.pt"))) == 1:
            return "openai"
        raise BadInput(f"{path}: cannot tell the SAE format (expected {CFG_FILE} + {WEIGHTS_FILE}, "
                       f"{sparsify.CFG_FILE} + {sparsify.WEIGHTS_FILE}, params.npz, ae.pt + config.json, "
                       f"or one .pt file, or a folder of such SAEs); pass --format")
    if path.name == sparsify.WEIGHTS_FILE or (
            path.name == CFG_FILE and (path.parent / sparsify.WEIGHTS_FILE).exists()
            and not (path.parent / WEIGHTS_FILE).exists()):
        return "sparsify"
    if path.name in (WEIGHTS_FILE, CFG_FILE):
        return "saelens"
    if path.suffix == ".npz":
        return "gemmascope"
    if path.name == "ae.pt" and (path.parent / "config.json").exists():
        return "dictionary_learning"
    if path.suffix == ".pt":
        return "openai"
    raise BadInput(f"{path}: cannot tell the SAE format from the file name; pass --format")


def is_one(path: Path, fmt: str) -> bool:
    """Whether PATH is itself one SAE of format ``fmt`` (else a folder of several)."""
    if path.is_file():
        return True
    if fmt == "auto":
        try:
            detect(path)
            return True
        except BadInput:
            return False
    marks = {"saelens": (CFG_FILE, WEIGHTS_FILE), "sparsify": (sparsify.CFG_FILE, sparsify.WEIGHTS_FILE),
             "gemmascope": ("params.npz",), "dictionary_learning": ("ae.pt", "config.json")}
    if fmt == "openai":
        return len(list(path.glob("*.pt"))) == 1
    return all((path / m).exists() for m in marks.get(fmt, ()))


def expand(path: Path, fmt: str, width: str | None, average_l0: str | None) -> list[tuple[Path, str]]:
    """(path, format) of every SAE PATH stands for: itself, or the SAEs of a snapshot folder."""
    found = snapshot.find(path, fmt) if path.is_dir() else []
    if len(found) <= 1 and is_one(path, fmt):
        return [(path, detect(path) if fmt == "auto" else fmt)]
    if not found:
        detect(path)  # the usual one-line 'cannot tell the SAE format'
        raise BadInput(f"{path}: no {fmt} SAE in this folder")
    return [(f.path, f.fmt) for f in snapshot.choose(path, found, width, average_l0)]


def read(path: Path, fmt: str) -> Loaded:
    """Read one SAE in the given format (heavy imports happen inside the readers)."""
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if fmt == "saelens":
        from saew.ingest.formats import saelens as reader
    elif fmt == "openai":
        from saew.ingest.formats import openai as reader
    elif fmt == "gemmascope":
        from saew.ingest.formats import gemmascope as reader
    elif fmt == "dictionary_learning":
        from saew.ingest.formats import dictlearn as reader
    elif fmt == "sparsify":
        reader = sparsify
    else:
        raise BadInput(f"--format {fmt!r}: unknown format")
    return reader.load(path)


def run(args, ctx) -> str:
    paths = [Path(p) for p in args.paths]
    if args.layer is not None and len(paths) > 1:
        raise BadInput(f"--layer {args.layer}: applies to one PATH, got {len(paths)}")
    if args.layer is not None:
        validate.layer(args.layer, "--layer")
    for path in paths:  # refuse a missing path before reading anything big
        if not path.exists():
            raise BadInput(f"{path}: no such file or directory")
    jobs = [j for path in paths for j in expand(path, args.format, getattr(args, "width", None),
                                                getattr(args, "average_l0", None))]
    if args.layer is not None and len(jobs) > 1:
        raise BadInput(f"--layer {args.layer}: applies to one SAE, but {paths[0]} holds {len(jobs)}")
    seen: dict[int, Path] = {}
    d_in: tuple[int, Path] | None = None
    out = []
    for path, fmt in jobs:
        loaded = read(path, fmt)
        src = loaded.weights_path
        layer = args.layer if args.layer is not None else loaded.layer
        if layer is None:
            layer = layer_from_hook(args.hook)
        if layer is None:
            raise BadInput(f"{src}: cannot tell the layer from the file or its path; pass --layer")
        validate.layer(layer, str(src))
        if layer in seen:
            raise BadInput(f"{src}: layer {layer} is also given by {seen[layer]}")
        seen[layer] = src
        p = loaded.params
        hook = args.hook or p.hook or f"blocks.{layer}.{loaded.hook_site}"
        p = replace(p, model=args.model or p.model, hook=hook).validate(str(src))
        validate.sae_shape(p.d_in, p.d_sae, p.architecture, p.k, p.threshold, str(src))
        if d_in is not None and p.d_in != d_in[0]:
            raise BadInput(f"{src}: d_in {p.d_in} differs from {d_in[1]}'s d_in {d_in[0]} "
                           f"(one d_in per release)")
        d_in = (p.d_in, src)
        write_sae(ctx.lake, args.release, layer, p, source_format=loaded.fmt,
                  source_path=str(src.resolve()), source_sha256=loaded.sha256, run_id=ctx.run_id)
        out.append(f"layer {layer}: {loaded.fmt} {p.architecture} d_in={p.d_in} d_sae={p.d_sae} ({src})")
        del loaded, p
    return f"ingested {len(out)} SAE(s) into release {args.release!r}\n" + "\n".join(out)
