"""Raw file access shared by the format readers: read once and hash, safetensors, npz, .pt, JSON.

Every failure becomes ``BadInput("<path>: <problem>")`` on one line. Sizes a file declares
(safetensors offsets, ``.npy`` headers, zip members) are checked against the bytes it holds
before anything is allocated or inflated (``ingest.validate``).
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams

from saew.ingest import validate

_HOOK_LAYER = re.compile(r"(?:^|\.)blocks\.(\d+)\.|(?:^|[._/])layers?[._]?(\d+)(?:\.|$|/|_)")


@dataclass(frozen=True)
class Loaded:
    """One SAE read from outside files, before it is written to the lake."""
    params: SAEParams
    layer: int | None          # from the file's config or path; None when it does not say
    fmt: str                   # saelens | openai | gemmascope | dictionary_learning
    weights_path: Path
    sha256: str
    hook_site: str = "hook_resid_post"  # default hook blocks.{layer}.<site> when params.hook is empty


def one_line(e: BaseException) -> str:
    """An exception's message as one short line."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]


def require_file(path: Path) -> Path:
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if not path.is_file():
        raise BadInput(f"{path}: not a file")
    return path


def read_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes and their sha256, from a single read."""
    require_file(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({one_line(e)})") from None
    return data, hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    """The sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> object:
    """A JSON config file (at most ``validate.MAX_CONFIG_BYTES``)."""
    require_file(path)
    try:
        with open(path, "rb") as f:
            data = validate.read_limited(f, validate.MAX_CONFIG_BYTES, str(path), "the config file")
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({one_line(e)})") from None
    return validate.json_loads(data, str(path))


_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
              "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def _st_entry(name: str, info, path: Path) -> tuple[np.dtype, list[int], int, int]:
    """(dtype, shape, begin, end) of one safetensors header entry, every field checked."""
    bad = BadInput(f"{path}: corrupt safetensors file (bad header entry for {name!r})")
    if not isinstance(info, dict):
        raise bad
    dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and isinstance(offs, list) and len(offs) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in [*shape, *offs])):
        raise bad
    if dtype not in _ST_DTYPES:
        raise BadInput(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    s, e = offs
    np_dtype = np.dtype(_ST_DTYPES[dtype])
    nbytes = math.prod(shape) * np_dtype.itemsize
    if min(shape, default=0) < 0 or s < 0 or e < s or e - s != nbytes:
        raise BadInput(f"{path}: corrupt safetensors file (tensor {name!r} declares shape {shape} "
                       f"({nbytes} bytes) but data_offsets {s}..{e})")
    return np_dtype, shape, s, e


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """The tensors of a safetensors file as (read-only, zero-copy) numpy arrays, and its sha256.

    Layout: 8-byte little-endian header length N, N bytes of JSON
    ``{name: {dtype, shape, data_offsets: [begin, end]}}``, then the data block. The header is
    read and checked first -- N at most ``validate.MAX_HEADER_BYTES``, every tensor's bytes
    equal to prod(shape) x itemsize, the data block exactly as long as the last tensor's end
    (truncation and trailing bytes refused) -- and only then the data. BF16 is widened to float32.
    """
    require_file(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise BadInput(f"{path}: truncated safetensors file ({size} bytes)")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise BadInput(f"{path}: truncated or corrupt safetensors file (header claims {n} bytes, "
                               f"file has {size})")
            if n > validate.MAX_HEADER_BYTES:
                raise BadInput(f"{path}: corrupt safetensors file (a {n}-byte header; at most "
                               f"{validate.MAX_HEADER_BYTES})")
            raw_header = f.read(n)
            try:
                header = validate.json_loads(raw_header, str(path))
            except BadInput:
                raise BadInput(f"{path}: corrupt safetensors file (header is not JSON)") from None
            if not isinstance(header, dict):
                raise BadInput(f"{path}: corrupt safetensors file (header is not a JSON object)")
            entries = {k: _st_entry(k, v, path) for k, v in header.items() if k != "__metadata__"}
            block = size - 8 - n
            end = max((e for *_, e in entries.values()), default=0)
            if end > block:
                name = next(k for k, v in entries.items() if v[3] == end)
                raise BadInput(f"{path}: truncated or corrupt safetensors file (tensor {name!r} needs "
                               f"bytes up to {end} of a {block}-byte data block)")
            if end < block:
                raise BadInput(f"{path}: {block - end} bytes of trailing data after the last tensor "
                               f"(corrupt safetensors file)")
            data = f.read(block)
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({one_line(e)})") from None
    sha = hashlib.sha256(head)
    sha.update(raw_header)
    sha.update(data)
    out: dict[str, np.ndarray] = {}
    for name, (np_dtype, shape, s, e) in entries.items():
        a = np.frombuffer(data, dtype=np_dtype, count=math.prod(shape), offset=s).reshape(shape)
        if np_dtype == np.dtype("<u2") and header[name]["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a
    return out, sha.hexdigest()


def npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """All arrays of an ``.npz`` archive (no pickles) and the file's sha256; member sizes and
    ``.npy`` headers are checked before anything is inflated (``validate.zip_members``)."""
    require_file(path)
    validate.zip_members(path, npy=True, what=".npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except BadInput:
        raise
    except Exception as e:  # zipfile.BadZipFile, zlib.error, ValueError (pickled object arrays), EOFError
        raise BadInput(f"{path}: not a readable .npz archive ({one_line(e)})") from None
    return arrays, sha256_of(path)


def torch_state(buf: bytes, path: Path) -> dict:
    """A ``.pt`` checkpoint's dict, loaded with ``weights_only=True`` (never runs code); a zip
    checkpoint's members are checked against the archive's size first."""
    import torch

    if zipfile.is_zipfile(io.BytesIO(buf)):
        validate.zip_members(path, npy=False, what="torch checkpoint")
    try:
        obj = torch.load(io.BytesIO(buf), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-running pickles, RuntimeError for corrupt zips
        msg = one_line(e)
        if "weights_only" in msg or "Unsupported global" in msg or "Weights only load failed" in msg:
            raise BadInput(f"{path}: refused: the checkpoint holds objects other than tensors "
                           f"(loading it would run code)") from None
        raise BadInput(f"{path}: not a readable torch checkpoint ({msg})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise BadInput(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def to_numpy(x, path: Path, name: str) -> np.ndarray:
    """A floating-point tensor or array as float32 numpy (no copy when it already is);
    integer, boolean and other dtypes are refused (``validate.float_array``)."""
    if hasattr(x, "detach"):
        x = x.detach()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    a = np.asarray(x)
    validate.float_array(a, str(path), name)
    return a.astype(np.float32, copy=False)


def take(d: dict, path: Path, *names: str, what: str | None = None):
    """The first of ``names`` present in ``d``, else BadInput naming what is missing."""
    for n in names:
        if n in d:
            return d[n]
    raise BadInput(f"{path}: missing tensor {what or names[0]!r} (have {sorted(map(str, d))[:12]})")


def layer_from_hook(hook: str | None) -> int | None:
    """The layer of a TransformerLens / HF hook name: ``blocks.6.hook_resid_post`` -> 6."""
    if not hook or not isinstance(hook, str):
        return None
    m = _HOOK_LAYER.search(hook)
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def expect_shape(a: np.ndarray, shape: tuple[int, ...], path: Path, name: str, why: str) -> None:
    if tuple(a.shape) != tuple(shape):
        raise BadInput(f"{path}: {name} has shape {tuple(a.shape)}, expected {tuple(shape)} ({why})")


def as_int(v, path: Path, name: str) -> int | None:
    if v is None:
        return None
    try:
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError
        return int(v)
    except (TypeError, ValueError, RuntimeError, OverflowError):  # RuntimeError: a many-element tensor
        raise BadInput(f"{path}: {name} must be an integer, got {str(v)[:80]!r}") from None
