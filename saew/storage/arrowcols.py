"""Arrow columns of lake tables: casting a step's data to a table's file schema, and
list<float32> columns to and from dense matrices."""
from __future__ import annotations

from typing import Mapping

import pyarrow as pa

from saew.storage.schemas import TableSpec


def row_group_size(t: pa.Table) -> int:
    """Rows per row group: about 64 MiB of data, within [1024, 1e6] (1 for an empty table)."""
    if t.num_rows == 0:
        return 1
    per_row = max(1, t.nbytes // t.num_rows)
    return int(max(1024, min(1_000_000, (64 << 20) // per_row)))


def to_arrow(t: TableSpec, data: pa.Table | Mapping[str, object], part: Mapping[str, object]) -> pa.Table:
    """Cast ``data`` to the table's file schema; check partition columns if present."""
    if isinstance(data, pa.Table):
        cols = {n: data.column(n) for n in data.column_names}
    else:
        cols = dict(data)
    for c in t.partition_by:
        if c in cols:
            col = cols.pop(c)
            vals = set(pa.chunked_array([col]).to_pylist() if not isinstance(col, (list, tuple)) else col) \
                if not _is_scalar(col) else {col}
            if vals and vals != {part[c]}:
                raise ValueError(f"{t.name}: column {c} holds {sorted(map(str, vals))[:3]}, partition is {part[c]!r}")
    schema = t.data_schema
    n_rows = {len(v) for v in cols.values() if not _is_scalar(v)}
    for f in schema:
        if f.name not in cols and f.name in t.optional and len(n_rows) == 1:
            cols[f.name] = pa.nulls(next(iter(n_rows)), f.type)
    missing = [f.name for f in schema if f.name not in cols]
    if missing:
        raise ValueError(f"{t.name}: missing columns {missing}")
    arrays = [_as_array(cols[f.name], f.type) for f in schema]
    n = {len(a) for a in arrays}
    if len(n) > 1:
        raise ValueError(f"{t.name}: columns of different lengths {n}")
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_scalar(x) -> bool:
    return isinstance(x, (str, int, float)) or x is None


def _as_array(col, typ: pa.DataType):
    import numpy as np

    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col.cast(typ) if col.type != typ else col
    if pa.types.is_list(typ) and isinstance(col, np.ndarray) and col.ndim == 2:
        return float_lists(col)
    if isinstance(col, np.ndarray):
        return pa.array(col).cast(typ)
    return pa.array(col, type=typ)


def float_lists(m) -> pa.ListArray:
    """A 2-D array as a list<float32> column, one row per matrix row (no per-row Python)."""
    import numpy as np

    m = np.ascontiguousarray(m, dtype=np.float32)
    n, d = m.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(m.reshape(-1)))


def list_matrix(col: pa.ChunkedArray | pa.Array, width: int | None = None):
    """A list<float> column back to a dense float32 matrix (rows must have equal length)."""
    import numpy as np

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(col)
    if n == 0:
        return np.zeros((0, width or 0), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, -1)
