"""Text corpora: the embedded ``builtin`` one, or a local file.

``builtin`` is made from the Python standard library that runs this program, parsed with
``ast``: docstrings (prose, like C4's web text) and function/method source (code), each
deduplicated, and the two streams interleaved in proportion so that every prefix of the
corpus holds the same prose/code mix (as C4-plus-code pretraining corpora mix them).
The order within each stream is a seeded permutation, so the corpus is fixed by the seed
(and the Python version).

Local corpora: ``.txt`` (documents separated by blank lines), ``.jsonl`` (one object per
line, field ``text``) or ``.parquet`` (column ``text``), in file order.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from saew.errors import BadInput

# stdlib folders that are test suites, demos, vendored or generated code
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3",
              "turtledemo", "ensurepip", "__pycache__", "idlelib", "tkinter", "pydoc_data",
              "encodings", "config-3.11-x86_64-linux-gnu"}
MIN_PROSE_CHARS = 80
MIN_CODE_CHARS = 120
MAX_DOC_CHARS = 4000
_BLANK = re.compile(r"\n[ \t]*\n")


def load_corpus(spec: str, seed: int = 0) -> list[str]:
    """``builtin`` or a local ``.txt`` / ``.jsonl`` / ``.parquet`` path -> list of documents."""
    if spec == "builtin":
        return list(builtin_corpus(int(seed)))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise BadInput(f"--corpus {spec}: no such file (use 'builtin' or a .txt, .jsonl or .parquet file)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            docs = _read_txt(path)
        elif suffix == ".jsonl":
            docs = _read_jsonl(path)
        elif suffix == ".parquet":
            docs = _read_parquet(path)
        else:
            raise BadInput(f"--corpus {spec}: unknown corpus format {suffix!r} (expected .txt, .jsonl or .parquet)")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"--corpus {spec}: cannot read it: {type(e).__name__}: {e}") from None
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise BadInput(f"--corpus {spec}: holds no text")
    return docs


def _read_txt(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [d.strip("\n") for d in _BLANK.split(text.replace("\r\n", "\n"))]


def _read_jsonl(path: Path) -> list[str]:
    docs = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}: line {n} is not JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise BadInput(f"{path}: line {n} has no string field \"text\"")
            docs.append(obj["text"])
    return docs


def _read_parquet(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise BadInput(f"{path}: not a readable Parquet file ({e})") from None
    if "text" not in schema.names:
        raise BadInput(f"{path}: has no column \"text\" (columns: {', '.join(schema.names)})")
    col = pq.read_table(path, columns=["text"]).column("text")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise BadInput(f"{path}: column \"text\" is {col.type}, expected strings")
    return [d for d in col.to_pylist() if d is not None]


# ---------------------------------------------------------------------- builtin
def stdlib_files() -> list[Path]:
    """The standard library's own .py files (no test suites, demos or vendored code), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).parts
        if any(part in _SKIP_DIRS or part.startswith(("test_", "config-")) for part in rel[:-1]):
            continue
        if rel[-1].startswith("test_") or rel[-1] == "__main__.py":
            continue
        out.append(p)
    return out


def extract(source: str) -> tuple[list[str], list[str]]:
    """(docstrings, code chunks) of one module: module/class/function docstrings of at least
    MIN_PROSE_CHARS, and the source of each top-level function and each method of a
    top-level class (not nested functions), MIN_CODE_CHARS..MAX_DOC_CHARS long, dedented."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return [], []
    lines = source.splitlines(keepends=True)
    prose, code = [], []
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, *defs)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= MIN_PROSE_CHARS:
                prose.append(doc.strip())
    chunks = [n for n in tree.body if isinstance(n, defs)]
    chunks += [m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body if isinstance(m, defs)]
    for n in chunks:
        start = (n.decorator_list[0].lineno if n.decorator_list else n.lineno) - 1
        seg = "".join(lines[start:n.end_lineno])
        seg = _dedent(seg).rstrip()
        if MIN_CODE_CHARS <= len(seg) <= MAX_DOC_CHARS:
            code.append(seg)
    return prose, code


def _dedent(s: str) -> str:
    import textwrap

    return textwrap.dedent(s)


def _parse_stdlib() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Deduplicated (prose, code) of the whole stdlib, in file order (parsing every file)."""
    seen: set[bytes] = set()
    prose: list[str] = []
    code: list[str] = []
    for path in stdlib_files():
        try:
            src = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        p, c = extract(src)
        for items, out in ((p, prose), (c, code)):
            for t in items:
                h = hashlib.blake2b(" ".join(t.split()).encode(), digest_size=16).digest()
                if h not in seen:
                    seen.add(h)
                    out.append(t)
    return tuple(prose), tuple(code)


def cache_dir() -> Path | None:
    """Where parsed corpora are cached between processes: ``$SAEW_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/saew``, else ``~/.cache/saew``; None when ``SAEW_CACHE_DIR=none``."""
    env = os.environ.get("SAEW_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "none", "off") else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "saew"


def stdlib_key() -> str:
    """What the builtin corpus depends on: this module's code, the interpreter, and the stdlib's
    files (name, size and mtime of its top-level entries, mtime of its folders: a file added,
    removed or replaced anywhere changes its folder's mtime)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    h = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=16)
    h.update(f"{sys.version}|{root}".encode())
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.is_dir(follow_symlinks=False):
                if e.name not in _SKIP_DIRS:
                    h.update(f"d {e.path} {st.st_mtime_ns}".encode())
                    stack.append(Path(e.path))
            elif d == root:
                h.update(f"f {e.name} {st.st_size} {st.st_mtime_ns}".encode())
    return h.hexdigest()


def disk_cached(path: Path | None, build):
    """``build()``'s (prose, code), read from the JSON file ``path`` when it holds them, else
    built and written there atomically (a temporary file renamed into place); an unreadable or
    malformed file is rebuilt, an unwritable folder only skips the write."""
    if path is not None:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            prose, code = obj["prose"], obj["code"]
            if all(isinstance(t, str) for t in prose) and all(isinstance(t, str) for t in code):
                return tuple(prose), tuple(code)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    prose, code = build()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"prose": list(prose), "code": list(code)}, f)
            os.replace(tmp, path)
        except OSError:
            pass
    return prose, code


@lru_cache(maxsize=1)
def _stdlib_pieces() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``_parse_stdlib()``, cached in this process and on disk (``cache_dir()``, keyed by
    ``stdlib_key()``): parsing takes about 7 s, reading the cache about 0.1 s."""
    d = cache_dir()
    return disk_cached(None if d is None else d / f"stdlib-corpus-{stdlib_key()}.json", _parse_stdlib)


@lru_cache(maxsize=4)
def builtin_corpus(seed: int = 0) -> tuple[str, ...]:
    """The embedded corpus: prose and code streams, each in a seeded order, interleaved so
    document i of a stream of length n sits at fraction (i + 0.5) / n of the corpus."""
    prose, code = _stdlib_pieces()
    rng = np.random.default_rng(seed)
    p_order = rng.permutation(len(prose))
    c_order = rng.permutation(len(code))
    docs = [prose[i] for i in p_order] + [code[i] for i in c_order]
    keys = np.concatenate([(np.arange(len(prose)) + 0.5) / max(len(prose), 1),
                           (np.arange(len(code)) + 0.5) / max(len(code), 1)])
    order = np.argsort(keys, kind="stable")
    return tuple(docs[i] for i in order)
