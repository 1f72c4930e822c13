"""Raw file access shared by the format readers: read once and hash, safetensors, npz, .pt, JSON.

Every failure becomes ``BadInput("<path>: <problem>")`` on one line.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams

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


def read_json(path: Path) -> object:
    require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{path}: not valid JSON ({one_line(e)})") from None


_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
              "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def safetensors_arrays(buf: bytes, path: Path) -> dict[str, np.ndarray]:
    """Parse a safetensors buffer into (read-only, zero-copy where possible) numpy arrays.

    Layout: 8-byte little-endian header length N, N bytes of JSON
    ``{name: {dtype, shape, data_offsets: [begin, end]}}``, then the data block.
    Truncation and inconsistent offsets are refused. BF16 is widened to float32.
    """
    if len(buf) < 8:
        raise BadInput(f"{path}: truncated safetensors file ({len(buf)} bytes)")
    n = int.from_bytes(buf[:8], "little")
    if n > len(buf) - 8:
        raise BadInput(f"{path}: truncated or corrupt safetensors file (header claims {n} bytes, "
                       f"file has {len(buf)})")
    try:
        header = json.loads(buf[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{path}: corrupt safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadInput(f"{path}: corrupt safetensors file (header is not a JSON object)")
    base, size = 8 + n, len(buf) - 8 - n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (s, e) = info["dtype"], [int(x) for x in info["shape"]], info["data_offsets"]
            s, e = int(s), int(e)
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{path}: corrupt safetensors file (bad header entry for {name!r})") from None
        if dtype not in _ST_DTYPES:
            raise BadInput(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        np_dtype = np.dtype(_ST_DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if s < 0 or e > size or e - s != count * np_dtype.itemsize or min(shape, default=0) < 0:
            raise BadInput(f"{path}: truncated or corrupt safetensors file (tensor {name!r} needs "
                           f"bytes {s}..{e} of a {size}-byte data block)")
        a = np.frombuffer(buf, dtype=np_dtype, count=count, offset=base + s).reshape(shape)
        if dtype == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a
    return out


def npz_arrays(buf: bytes, path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive (no pickles)."""
    try:
        with np.load(io.BytesIO(buf), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, zlib.error, ValueError (pickled object arrays), EOFError
        raise BadInput(f"{path}: not a readable .npz archive ({one_line(e)})") from None


def torch_state(buf: bytes, path: Path) -> dict:
    """A ``.pt`` checkpoint's dict, loaded with ``weights_only=True`` (never runs code)."""
    import torch

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
    """A tensor or array as float32 numpy (no copy when it already is)."""
    if hasattr(x, "detach"):
        x = x.detach()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.number):
        raise BadInput(f"{path}: {name} is not numeric (dtype {a.dtype})")
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
        if isinstance(v, float) and not v.is_integer():
            raise ValueError
        return int(v)
    except (TypeError, ValueError):
        raise BadInput(f"{path}: {name} must be an integer, got {v!r}") from None
