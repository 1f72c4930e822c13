"""``compute.cpu``: the bf16 capability checks and ``trim_heap``."""
from __future__ import annotations

import platform

import numpy as np

from saew.compute.cpu import _libc, bf16_gemm_accumulates_in_float32, native_bf16, trim_heap


def test_trim_heap_finds_glibc_and_is_safe_to_call():
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert _libc() is not None
    junk = [np.ones(1 << 16) for _ in range(200)]     # ~100 MB of small-ish blocks, then freed
    del junk
    trim_heap()
    trim_heap()                                         # idempotent


def test_capability_checks_answer_booleans():
    assert isinstance(native_bf16(), bool)
    assert isinstance(bf16_gemm_accumulates_in_float32(), bool)
