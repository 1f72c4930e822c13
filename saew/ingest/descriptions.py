"""``saew ingest descriptions PATH... --release R [--layer L]``: Neuronpedia explanations,
and whole Neuronpedia export folders.

An export folder as Neuronpedia's exporter writes it,
``exports/<modelId>/<source>/{explanations,features,activations}/batch-N.jsonl.gz``, ingests in
one command: ``explanations`` batches into ``descriptions`` (below) and their UMAP columns into
``clusters`` (space 'neuronpedia'), ``activations`` batches into ``examples`` and ``features``
batches into ``feature_stats`` (``ingest.neuronpedia`` has their fields). A file's kind is the
name of its folder; the exporter's metadata files (model/source/sourceset/release.jsonl, the
``config`` folder) are skipped. Every file is streamed line by line; nothing is written until
every row of every file has been read and checked. Bounds (``ingest.validate``): a line at most
64 MiB, a ``.json`` document at most 1 GiB, a ``.gz`` file inflating to at most 100 x its size
(at least 64 MiB), JSON nested no deeper than the parser allows; layers in int32.

Accepted explanation inputs (a folder is searched recursively for these):

* bulk export rows, one JSON object per line: ``explanations/batch-N.jsonl.gz`` or ``.jsonl``
  (modelId, layer such as ``"6-res-jb"``, index as a string or an int, description,
  explanationModelName, typeName, ...);
* a ``.json`` list of such rows (or a single row);
* the per-feature API JSON (``{modelId, layer, index, explanations: [...]}``, or a list of them):
  each explanation becomes a row, taking modelId/layer/index from the feature when it lacks them.

The layer of a row is the leading integer of its ``layer`` ("6-res-jb" -> 6); ``--layer``
overrides it. Every (layer, feature) must belong to an ingested SAE of the release with
feature < d_sae, else exit 2. ``explainer`` = explanationModelName, ``source`` = 'neuronpedia'.

Several explanations for one feature: rows with an empty description are dropped; of the rest
the one with the smallest (explanationModelName, description) -- compared as Python strings,
i.e. by code point, a missing model name counting as "" -- is kept. The choice depends only on
the set of rows, not on file or line order.

Merge rule: a layer's new rows replace the stored rows of the same features; the layer's other
stored descriptions are kept (read, anti-join, write back). Re-ingesting a file is idempotent.
"""
from __future__ import annotations

import gzip
import re
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from saew.errors import BadInput
from saew.ingest import validate
from saew.ingest.neuronpedia import ExportTables
from saew.storage.saes import d_sae

_LAYER = re.compile(r"\s*(\d+)(?:\D.*)?", re.DOTALL)
SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")
ROW_KINDS = ("activations", "features")  # folders of an export whose rows are not explanations
METADATA = {"model.jsonl", "source.jsonl", "sourceset.jsonl", "release.jsonl"}


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="Neuronpedia exports: .json, .jsonl, .jsonl.gz files, or folders of them")
    p.add_argument("--release", required=True, help="release the descriptions belong to")
    p.add_argument("--layer", type=int, default=None,
                   help="layer of every row (default: the leading number of each row's layer)")


def files_of(path: Path) -> list[Path]:
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if path.is_dir():
        found = sorted(f for f in path.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES)
                       and f.name not in METADATA and "config" not in f.relative_to(path).parts[:-1])
        if not found:
            raise BadInput(f"{path}: no .json, .jsonl or .jsonl.gz files in this folder")
        return found
    if not path.name.endswith(SUFFIXES):
        raise BadInput(f"{path}: expected a .json, .jsonl or .jsonl.gz file")
    return [path]


def _open(f: Path):
    """A binary stream of a file's text, gunzipped for ``.gz`` names."""
    return gzip.open(f, "rb") if f.name.endswith(".gz") else open(f, "rb")


def _limit(f: Path) -> int | None:
    """How many decompressed bytes a ``.gz`` file may hold (``validate.inflate_limit``)."""
    return validate.inflate_limit(f.stat().st_size) if f.name.endswith(".gz") else None


@contextmanager
def _guard(f: Path) -> Iterator[None]:
    """The one-line refusals of unreadable gzip or text data."""
    try:
        yield
    except gzip.BadGzipFile:
        raise BadInput(f"{f}: not a gzip file") from None
    except (EOFError, zlib.error) as e:
        raise BadInput(f"{f}: truncated or corrupt gzip data ({e})") from None
    except UnicodeDecodeError:
        raise BadInput(f"{f}: not UTF-8 text") from None


def _lines(f: Path) -> Iterator[tuple[int, str]]:
    """Lines of a text or gzip file (gzip by name), with 1-based numbers, streamed: a line may
    hold at most ``validate.MAX_LINE_BYTES`` and a ``.gz`` file inflate to at most
    ``validate.inflate_limit`` of its size, so a one-line compression bomb is refused after
    reading one limit's worth, not held whole."""
    limit, total = _limit(f), 0
    with _guard(f), _open(f) as fh:
        n = 0
        while line := fh.readline(validate.MAX_LINE_BYTES + 1):
            n += 1
            total += len(line)
            if len(line) > validate.MAX_LINE_BYTES:
                raise BadInput(f"{f}:{n}: line longer than {validate.MAX_LINE_BYTES} bytes")
            if limit is not None and total > limit:
                raise BadInput(f"{f}: decompresses to more than {limit} bytes (a compression bomb?)")
            yield n, line.decode("utf-8")


def _document(f: Path) -> object:
    """A whole ``.json`` / ``.json.gz`` file, at most ``validate.MAX_JSON_BYTES`` (and the
    ``.gz`` inflate limit) decompressed, parsed."""
    limit = min(validate.MAX_JSON_BYTES, _limit(f) or validate.MAX_JSON_BYTES)
    with _guard(f), _open(f) as fh:
        data = validate.read_limited(fh, limit, str(f), "the decompressed JSON" if _limit(f) else "the JSON file")
        text = data.decode("utf-8")
    return validate.json_loads(text, str(f))


def _expand(obj, where: str, top: bool = True) -> Iterator[tuple[dict, str]]:
    """Rows from one JSON value: a row, a per-feature object with ``explanations``, or a list
    of those (one level)."""
    if isinstance(obj, list) and top:
        for i, x in enumerate(obj):
            yield from _expand(x, f"{where}[{i}]", top=False)
    elif isinstance(obj, dict):
        if isinstance(obj.get("explanations"), list):
            parent = {k: obj.get(k) for k in ("modelId", "layer", "index")}
            for i, e in enumerate(obj["explanations"]):
                if not isinstance(e, dict):
                    raise BadInput(f"{where}: explanations[{i}] is not an object")
                yield {**parent, **{k: v for k, v in e.items() if v is not None}}, f"{where}.explanations[{i}]"
        else:
            yield obj, where
    else:
        raise BadInput(f"{where}: expected a JSON object{' or list' if top else ''}, found {type(obj).__name__}")


def kind_of(f: Path) -> str:
    """'activations' or 'features' for the export's batches of those, else 'explanations'."""
    return f.parent.name if f.parent.name in ROW_KINDS else "explanations"


def _json_lines(f: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of every non-blank line of a JSON-lines file."""
    for n, line in _lines(f):
        if not line.strip():
            continue
        yield n, validate.json_loads(line, f"{f}:{n}", "malformed JSON line")


def read_rows(f: Path) -> Iterator[tuple[dict, str]]:
    if kind_of(f) != "explanations":
        for n, obj in _json_lines(f):
            if not isinstance(obj, dict):
                raise BadInput(f"{f}:{n}: expected a JSON object, found {type(obj).__name__}")
            yield obj, f"{f}:{n}"
    elif f.name.endswith((".jsonl", ".jsonl.gz")):
        for n, obj in _json_lines(f):
            yield from _expand(obj, f"{f}:{n}")
    else:
        yield from _expand(_document(f), str(f))


def parse_layer(v, where: str) -> int:
    if isinstance(v, bool):
        v = None
    if isinstance(v, int):
        return validate.layer(v, where)
    m = _LAYER.fullmatch(str(v)) if isinstance(v, str) else None
    if not m:
        raise BadInput(f"{where}: cannot read a layer from {str(v)[:80]!r}; pass --layer")
    if len(m.group(1)) > 18:
        raise BadInput(f"{where}: layer {m.group(1)[:18]}... is out of range [0, {validate.INT32_MAX}]")
    return validate.layer(int(m.group(1)), where)


def parse_index(v, where: str) -> int:
    if isinstance(v, bool) or v is None:
        raise BadInput(f"{where}: missing or invalid feature index {v!r}")
    try:
        i = int(v) if isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()) else None
    except ValueError:
        i = None
    if i is None or i < 0:
        raise BadInput(f"{where}: feature index must be a non-negative integer, got {v!r}")
    return i


def choose(rows: dict[tuple[int, int], tuple[str, str]], layer: int, feature: int,
           description: str, explainer: str) -> None:
    """Keep the smallest (explainer, description) per (layer, feature) (see the module doc)."""
    key = (layer, feature)
    cand = (explainer, description)
    if key not in rows or cand < rows[key]:
        rows[key] = cand


def add_description_rows(lake, release: str, layer: int, new: dict[int, tuple[str, str]]) -> int:
    """Merge one layer's chosen rows into its ``descriptions`` partition; returns the row count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fresh = pa.table({
        "feature": pa.array(list(new.keys()), pa.int32()),
        "description": pa.array([v[1] for v in new.values()], pa.string()),
        "explainer": pa.array([v[0] for v in new.values()], pa.string()),
        "source": pa.array(["neuronpedia"] * len(new), pa.string()),
    })
    old = lake.query("SELECT feature, description, explainer, source FROM descriptions "
                     "WHERE release = ? AND layer = ?", [release, int(layer)])
    old = old.filter(pc.invert(pc.is_in(old.column("feature"), value_set=fresh.column("feature"))))
    merged = pa.concat_tables([old.cast(fresh.schema), fresh]).sort_by("feature")
    lake.write("descriptions", merged, release=release, layer=int(layer))
    return merged.num_rows


def run(args, ctx) -> str:
    lake, release = ctx.lake, args.release
    files = [f for p in args.paths for f in files_of(Path(p))]
    chosen: dict[tuple[int, int], tuple[str, str]] = {}
    limits: dict[int, int] = {}
    counts = dict.fromkeys(("explanations", *ROW_KINDS), 0)
    extra = ExportTables()
    for f in files:
        kind = kind_of(f)
        source = f.parent.parent.name  # exports/<modelId>/<source>/<kind>/batch-N.jsonl.gz
        for row, where in read_rows(f):
            lay = row.get("layer")
            if args.layer is not None:
                layer = args.layer
            else:
                layer = parse_layer(source if lay is None and kind != "explanations" else lay, where)
            feature = parse_index(row.get("index", row.get("feature")), where)
            if layer not in limits:
                try:
                    limits[layer] = d_sae(lake, release, layer)
                except BadInput:
                    raise BadInput(f"{where}: layer {layer} has no SAE ingested in release {release!r}") from None
            if feature >= limits[layer]:
                raise BadInput(f"{where}: feature {feature} is out of range (release {release!r} "
                               f"layer {layer} has d_sae={limits[layer]})")
            counts[kind] += 1
            if kind == "activations":
                extra.add_activation(row, layer, feature, where)
                continue
            if kind == "features":
                extra.add_feature(row, layer, feature, where)
                continue
            desc = row.get("description")
            if desc is not None and not isinstance(desc, str):
                raise BadInput(f"{where}: description must be a string")
            explainer = str(row.get("explanationModelName") or "")
            extra.add_umap(row, layer, feature, where, explainer, desc or "")
            if desc and desc.strip():
                choose(chosen, layer, feature, desc, explainer)
    by_layer: dict[int, dict[int, tuple[str, str]]] = {}
    for (layer, feature), v in chosen.items():
        by_layer.setdefault(layer, {})[feature] = v
    if not by_layer and not extra:
        raise BadInput(f"{args.paths[0]}: no descriptions found")
    out = []
    for layer in sorted(by_layer):
        total = add_description_rows(lake, release, layer, by_layer[layer])
        out.append(f"layer {layer}: {len(by_layer[layer])} described features ({total} stored)")
    out += extra.write(lake, release, limits)
    read = ", ".join(f"{n} {k[:-1]} rows" for k, n in counts.items() if n or k == "explanations")
    return f"read {read} from {len(files)} file(s)\n" + "\n".join(out)
