"""What this CPU offers the bfloat16 screening GEMMs: native bf16 dot products, and a torch
bf16 GEMM that accumulates in float32 (the precondition of the screening error bounds).

Used by ``compute.matching.costs.resolve_screen`` (the match screen) and
``compute.text.embed.resolve_dtype`` (the encoder's compute type); ``trim_heap`` for harvest's
shard loop.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

U32 = 2.0 ** -24  # unit roundoff of float32
# the dtypes a TopK selection GEMM may run in (train --select-dtype, harvest --screen)
SELECT_DTYPES = ("auto", "float32", "bfloat16")


@functools.cache
def _cpu_flags() -> str:
    """The text of /proc/cpuinfo, read once ('' where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16, Linux flags)."""
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", _cpu_flags()))


def native_amx() -> bool:
    """Whether this CPU has AMX-BF16 tiles (Intel Sapphire Rapids and later, Linux flags)."""
    return bool(re.search(r"\bamx_bf16\b", _cpu_flags()))


@functools.cache
def bf16_gemm_accumulates_in_float32() -> bool:
    """The bfloat16 screening bound assumes torch's CPU bf16 GEMM accumulates in float32: a
    dot product of 4,096 ones is 4,096 then (bfloat16 accumulation stalls at 256), and a
    random product stays within the stated bound."""
    import torch

    ones = torch.ones(1, 4096, dtype=torch.bfloat16)
    if float(torch.mm(ones, ones.T)) != 4096.0:
        return False
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 1537, generator=g).to(torch.bfloat16)
    b = torch.randn(96, 1537, generator=g).to(torch.bfloat16)
    exact = a.double() @ b.double().T
    got = torch.mm(a, b.T).double()
    d = a.shape[1]
    bound = (2.0 ** -8 + d * U32 * 1.01) * (a.double().abs() @ b.double().abs().T)
    return bool(((got - exact).abs() <= bound).all())



@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def trim_heap() -> None:
    """Return the freed heap to the operating system (glibc ``malloc_trim(0)``; nothing
    elsewhere). A long harvest frees each shard's codes after its commit, but glibc keeps the
    freed pages in its per-thread arenas: measured on minilm, 2 layers, 12 shards of 50k tokens,
    resident memory grew 1.07 -> 1.61 GB without it and 1.02 -> 1.25 GB with it."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
