"""A hypothesis fuzz of every loader over mutated valid files (issue 15, items 1 and 7).

Each loader gets a valid file of its format, written by ``tests/formats.py`` in the exact
on-disk layout, with bytes flipped, inserted, deleted, duplicated or cut off. The loader must
either read it or refuse it with ``BadInput`` -- never another exception (a traceback), never
a hang (hypothesis' deadline), and never allocate much more than the file itself
(``tracemalloc`` peak, which numpy reports to, below ``BUDGET`` + 16 x the file's size; the
process's peak RSS, which torch's allocations count in, grows by less than 4 x ``BUDGET``).
Few examples per loader keep the whole file at a few seconds inside ``make test``.
"""
from __future__ import annotations

import resource
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from saew.errors import BadInput  # noqa: E402
from tests.factories import make_sae  # noqa: E402
from tests.formats import (neuronpedia_row, write_dictionary_learning, write_gemmascope, write_json,  # noqa: E402
                           write_jsonl, write_jsonl_gz, write_labels, write_openai, write_saelens,
                           write_sparse, write_sparsify, write_table)

BUDGET = 32 * 2 ** 20
EXAMPLES = 15


def _sae(path: Path, fmt: str) -> None:
    from saew.ingest import validate
    from saew.ingest.sae import read

    loaded = read(path, fmt)
    p = loaded.params.validate(str(path))
    validate.sae_shape(p.d_in, p.d_sae, p.architecture, p.k, p.threshold, str(path))


def _rows(path: Path) -> None:
    from saew.ingest.descriptions import parse_index, parse_layer, read_rows

    for row, where in read_rows(path):
        parse_layer(row.get("layer"), where)
        parse_index(row.get("index"), where)


def _tables(fn: str) -> Callable[[Path], object]:
    def load(path: Path):
        from saew.ingest import tables
        if fn == "read_table":
            return tables.read_table(path, ("feature", "cluster"))
        return getattr(tables, fn)(path)
    return load


def _plan(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "p.npz", plan=np.ones((2, 2)), src_clusters=np.arange(2), dst_clusters=np.arange(2))
    return d / "p.npz"


def _npz(path: Path) -> None:
    from saew.ingest.formats.raw import npz_arrays

    npz_arrays(path)


# name -> (write a valid input under a folder and return (the path to load, the file to mutate), load)
FORMATS: dict[str, tuple[Callable[[Path], tuple[Path, Path]], Callable[[Path], object]]] = {
    "saelens-weights": (lambda d: (f := write_saelens(d, make_sae(4, 8, "jumprelu"), hook="blocks.0.hook_resid_post"),
                                   f / "sae_weights.safetensors"), lambda p: _sae(p, "saelens")),
    "saelens-cfg": (lambda d: (f := write_saelens(d, make_sae(4, 8, "topk", k=2), hook="blocks.0.hook_resid_post"),
                               f / "cfg.json"), lambda p: _sae(p, "saelens")),
    "sparsify": (lambda d: (f := write_sparsify(d / "layers.0", make_sae(4, 8, "topk", k=2)), f / "sae.safetensors"),
                 lambda p: _sae(p, "sparsify")),
    "gemmascope": (lambda d: (f := write_gemmascope(d, 0, make_sae(4, 8, "jumprelu")) / "params.npz", f),
                   lambda p: _sae(p, "gemmascope")),
    "openai": (lambda d: (f := write_openai(d / "0.pt", make_sae(4, 8, "topk", k=2)), f), lambda p: _sae(p, "openai")),
    "dictionary_learning": (lambda d: (f := write_dictionary_learning(d, make_sae(4, 8), layer=0), f / "ae.pt"),
                            lambda p: _sae(p, "dictionary_learning")),
    "descriptions-jsonl": (lambda d: (f := write_jsonl(d / "a.jsonl", [neuronpedia_row(0, i, f"d{i}") for i in range(4)]), f),
                           _rows),
    "descriptions-jsonl-gz": (lambda d: (f := write_jsonl_gz(d / "a.jsonl.gz", [neuronpedia_row(0, i, "d") for i in range(4)]), f),
                              _rows),
    "descriptions-json": (lambda d: (f := write_json(d / "a.json", [neuronpedia_row(0, i, "d") for i in range(4)]), f), _rows),
    "labels-npy": (lambda d: (f := write_labels(d / "l.npy", np.arange(8) % 3), f), _tables("read_npy")),
    "clusters-csv": (lambda d: (f := write_table(d / "c.csv", {"feature": [0, 1], "cluster": [1, 2]}), f), _tables("read_table")),
    "clusters-parquet": (lambda d: (f := write_table(d / "c.parquet", {"feature": [0, 1], "cluster": [1, 2]}), f),
                         _tables("read_table")),
    "activations-npz": (lambda d: (f := write_sparse(d / "a.npz", np.eye(4, 8, dtype=np.float32)), f), _tables("read_sparse")),
    "transport-npz": (lambda d: (f := _plan(d), f), _npz),
}

_op = st.tuples(st.sampled_from(["flip", "insert", "delete", "dup", "cut", "big"]),
                st.floats(0, 1, allow_nan=False), st.integers(0, 255))


def mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    """Apply byte-level mutations: flip a byte, insert or delete one, duplicate a chunk, cut
    the tail, or write a large integer into 8 bytes (sizes and offsets are little-endian u64s)."""
    b = bytearray(data)
    for kind, where, value in ops:
        i = int(where * max(len(b) - 1, 0))
        if kind == "flip" and b:
            b[i] ^= value or 1
        elif kind == "insert":
            b.insert(i, value)
        elif kind == "delete" and b:
            del b[i]
        elif kind == "dup":
            b[i:i] = b[i:i + 64]
        elif kind == "cut":
            del b[i:]
        elif kind == "big" and len(b) >= i + 8:
            b[i:i + 8] = (2 ** 40 + value).to_bytes(8, "little")
    return bytes(b)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, tuple[Path, Path, bytes]]:
    root = tmp_path_factory.mktemp("fuzz")
    out = {}
    for name, (write, _) in FORMATS.items():
        load_path, file = write(root / name)
        out[name] = (load_path, file, file.read_bytes())
    return out


@pytest.mark.parametrize("name", list(FORMATS))
def test_mutated_files_are_read_or_refused(originals, name):
    load_path, file, original = originals[name]
    load = FORMATS[name][1]
    load(load_path)  # the valid file loads
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux reports KiB)

    @settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(_op, min_size=1, max_size=4))
    def check(ops):
        data = mutate(original, ops)
        file.write_bytes(data)
        tracemalloc.start()
        try:
            load(load_path)
        except BadInput as e:
            assert "\n" not in str(e) and str(e), repr(e)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < BUDGET + 16 * len(data), (ops, peak)

    try:
        check()
    finally:
        file.write_bytes(original)
    # the whole process too (torch allocates outside tracemalloc): the peak RSS grows little
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    assert grown < 4 * BUDGET, f"peak RSS grew by {grown} bytes"


def test_mutate_covers_each_kind():
    data = bytes(range(32))
    assert mutate(data, [("cut", 0.5, 0)]) == data[:15]
    assert len(mutate(data, [("insert", 0.0, 7)])) == 33
    assert mutate(data, [("big", 0.0, 1)])[:8] == (2 ** 40 + 1).to_bytes(8, "little")
