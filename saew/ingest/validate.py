"""The checks at the boundary of every ingest, one function per check.

Each raises ``BadInput("<file or argument>: <what is wrong>")`` (one line, exit 2, nothing
written). The readers of ``ingest.formats.raw``, ``ingest.descriptions``, ``ingest.neuronpedia``
and ``ingest.results`` call these and nothing else for the checks below, so each rule is
stated once:

* values: weights are floating point (float16/bfloat16/float32/float64; integers and booleans
  refused, since an int32 tensor cast to float is not what the SAE computed); layers in
  [0, 2^31 - 1]; labels, clusters and indices in int32; probabilities in [0, 1]; activations > 0;
  float32 columns within float32's range; layer pairs ordered src < dst;
* SAE shapes: d_in >= 1, d_sae >= 1 (both int32), TopK k in 1..d_sae, JumpReLU thresholds >= 0;
* resources, checked before anything is allocated: a safetensors header at most
  ``MAX_HEADER_BYTES``; declared array sizes equal to the bytes a file holds for them; zip
  members (``.npz``, torch ``.pt``) and gzip streams may inflate to at most
  ``inflate_limit(compressed bytes)`` = max(``MIN_INFLATE``, ``MAX_RATIO`` x compressed); a JSON
  line at most ``MAX_LINE_BYTES``, a JSON document at most ``MAX_JSON_BYTES`` (an SAE config
  ``MAX_CONFIG_BYTES``); JSON nesting as
  deep as Python's parser goes (a RecursionError is refused as "nested too deeply").
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from saew.errors import BadInput

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_COUNT = 2 ** 53                 # token counts and ids: exact in float64, far inside BIGINT
MAX_HEADER_BYTES = 100 * 2 ** 20    # a safetensors JSON header (the safetensors library's limit)
MAX_LINE_BYTES = 64 * 2 ** 20       # one line of a .jsonl / .jsonl.gz
MAX_JSON_BYTES = 2 ** 30            # one .json / .json.gz document, decompressed
MAX_CONFIG_BYTES = 16 * 2 ** 20     # an SAE's cfg.json / config.json
MAX_RATIO = 100                     # decompressed bytes per compressed byte, beyond MIN_INFLATE
MIN_INFLATE = 64 * 2 ** 20


# ---------------------------------------------------------------- values
def int_range(a, lo: int, hi: int, where: str, what: str) -> None:
    """Every value of ``a`` (a scalar or an integer array) in [lo, hi]."""
    arr = np.asarray(a)
    if arr.size == 0:
        return
    if arr.dtype.kind == "O":  # Python ints beyond int64
        bad = [int(x) for x in arr.ravel() if not lo <= int(x) <= hi]
        if bad:
            raise BadInput(f"{where}: {what} {bad[0]} is out of range [{lo}, {hi}]")
        return
    mn, mx = arr.min(), arr.max()
    if int(mn) < lo or int(mx) > hi:
        v = int(mn) if int(mn) < lo else int(mx)
        raise BadInput(f"{where}: {what} {v} is out of range [{lo}, {hi}]")


def int32(a, where: str, what: str) -> None:
    int_range(a, INT32_MIN, INT32_MAX, where, what)


def layer(v: int, where: str) -> int:
    """A layer number: an integer in [0, 2^31 - 1] (the lake's INT)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise BadInput(f"{where}: layer must be an integer, got {v!r}")
    int_range(int(v), 0, INT32_MAX, where, "layer")
    return int(v)


def layer_pair(src: int, dst: int, where: str) -> None:
    """Layer pairs run forward: src < dst."""
    if not src < dst:
        raise BadInput(f"{where}: --dst-layer {dst} must be after --src-layer {src} "
                       f"(layer pairs run forward, src < dst)")


def unit_interval(a: np.ndarray, where: str, what: str) -> None:
    """Probabilities in [0, 1] (NaN marks a NULL and is skipped)."""
    a = np.asarray(a, np.float64)
    bad = ~np.isnan(a) & ((a < 0) | (a > 1))
    if bad.any():
        raise BadInput(f"{where}: {what} {float(a[bad][0])} is outside [0, 1]")


def positive(a: np.ndarray, where: str, what: str) -> None:
    """Activations are > 0 (an SAE's codes are non-negative; zeros are not stored)."""
    a = np.asarray(a)
    bad = a <= 0
    if bad.any():
        raise BadInput(f"{where}: {what} {float(a[bad][0])} is not positive (SAE activations are > 0)")


def finite(a: np.ndarray, where: str, what: str, *, float32: bool = False) -> None:
    """No NaN or Inf (NaN where a NULL is allowed is the caller's business); with ``float32``
    also within float32's range, the type the lake stores."""
    a = np.asarray(a)
    if not np.isfinite(a).all():
        raise BadInput(f"{where}: {what} holds NaN or Inf values")
    if float32 and a.size and float(np.abs(a).max()) > FLOAT32_MAX:
        raise BadInput(f"{where}: {what} holds values beyond float32's range (|x| > {FLOAT32_MAX:.3g})")


def float_array(a: np.ndarray, where: str, name: str) -> None:
    """Weights are floating point: float16, bfloat16 (read as float32), float32 or float64."""
    if a.dtype.kind != "f":
        raise BadInput(f"{where}: {name} has dtype {a.dtype}; SAE weights must be float16, bfloat16, "
                       f"float32 or float64")


def sae_shape(d_in: int, d_sae: int, architecture: str, k: int | None, threshold: np.ndarray | None,
              where: str) -> None:
    """d_in, d_sae >= 1 (int32); TopK k in 1..d_sae; JumpReLU thresholds >= 0."""
    for name, v in (("d_in", d_in), ("d_sae", d_sae)):
        if not 1 <= v <= INT32_MAX:
            raise BadInput(f"{where}: {name} = {v}; must be at least 1")
    if architecture == "topk" and (k is None or not 1 <= k <= d_sae):
        raise BadInput(f"{where}: TopK k = {k} must be in 1..d_sae ({d_sae})")
    if threshold is not None and threshold.size and float(threshold.min()) < 0:
        raise BadInput(f"{where}: JumpReLU threshold {float(threshold.min())} is negative "
                       f"(thresholds are >= 0)")


# ---------------------------------------------------------------- resources
def inflate_limit(compressed: int) -> int:
    """How many bytes ``compressed`` bytes of deflate/gzip data may inflate to."""
    return max(MIN_INFLATE, MAX_RATIO * int(compressed))


def json_loads(text: str | bytes, where: str, what: str = "not valid JSON") -> object:
    """JSON, refusing malformed text and nesting deeper than the parser's recursion limit."""
    try:
        return json.loads(text)
    except RecursionError:
        raise BadInput(f"{where}: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise BadInput(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: {what} ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise BadInput(f"{where}: {what} ({' '.join(str(e).split())[:120]})") from None


def read_limited(fh: IO[bytes], limit: int, where: str, what: str) -> bytes:
    """All of ``fh``, refusing more than ``limit`` bytes; read in 4 MiB chunks, so memory
    follows the data, not the limit (``read(limit)`` would allocate the limit up front)."""
    chunks, total = [], 0
    while chunk := fh.read(min(1 << 22, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise BadInput(f"{where}: {what} is larger than {limit} bytes")
    return b"".join(chunks)


def npy_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data bytes) of an ``.npy`` stream's header; object arrays refused."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _fortran, dtype = read(fh, max_header_size=10000)
    except Exception as e:  # ValueError (bad magic / header), EOFError
        raise BadInput(f"{where}: not a readable .npy array ({' '.join(str(e).split())[:160]})") from None
    if dtype.hasobject:
        raise BadInput(f"{where}: holds Python objects (pickles are refused)")
    return tuple(int(x) for x in shape), dtype, math.prod(int(x) for x in shape) * dtype.itemsize


def npy_file(path: Path) -> None:
    """An ``.npy`` file's header declares exactly the bytes that follow it."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        shape, _, nbytes = npy_header(fh, str(path))
        offset = fh.tell()
    if offset + nbytes != size:
        raise BadInput(f"{path}: header declares shape {list(shape)} ({nbytes} bytes) but the file "
                       f"holds {size - offset} bytes of data")


def zip_members(path: Path, *, npy: bool, what: str = "zip archive") -> None:
    """A zip archive (``.npz``, torch ``.pt``) whose members inflate within ``inflate_limit`` and,
    with ``npy``, whose ``.npy`` members declare exactly the bytes they hold -- checked from the
    headers, before anything is inflated."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > inflate_limit(path.stat().st_size):
                raise BadInput(f"{path}: its members declare {total} bytes, more than "
                               f"{inflate_limit(path.stat().st_size)} for a {path.stat().st_size}-byte "
                               f"archive (a compression bomb?)")
            if not npy:
                return
            for info in infos:
                where = f"{path}: member {info.filename}"
                with zf.open(info) as fh:
                    shape, _, nbytes = npy_header(fh, where)
                    offset = fh.tell() if fh.seekable() else None
                if offset is not None and offset + nbytes != info.file_size:
                    raise BadInput(f"{where} declares shape {list(shape)} ({nbytes} bytes) but holds "
                                   f"{info.file_size - offset}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError) as e:  # RuntimeError: an encrypted member
        raise BadInput(f"{path}: not a readable {what} ({' '.join(str(e).split())[:160]})") from None
