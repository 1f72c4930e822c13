"""Result files computed elsewhere (``.npy``, ``.csv``, ``.parquet``), read and checked for
``ingest.results``: integer and float columns, ranges and uniqueness, each refusal one line
naming the file (``ingest.validate`` holds the rules)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.ingest import validate
from saew.ingest.formats.raw import require_file


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array whose header declares exactly the bytes the file holds (no pickles)."""
    validate.npy_file(require_file(path))
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # ValueError (pickled/corrupt), EOFError, OSError
        raise BadInput(f"{path}: not a readable .npy array ({' '.join(str(e).split())[:200]})") from None


def read_table(path: Path, required: tuple[str, ...]):
    """A ``.csv`` or ``.parquet`` file as an Arrow table with the required columns.

    In a CSV only an empty cell is NULL (``nan`` is a NaN, refused where numbers must be
    finite); a Parquet file whose rows would decode to more than ``validate.inflate_limit`` of
    its size (8 bytes a value) is refused from its footer, before its pages are read."""
    import pyarrow as pa

    require_file(path)
    try:
        if path.suffix == ".csv":
            import pyarrow.csv as pacsv
            t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False))
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq
            meta = pq.ParquetFile(path).metadata
            decoded, limit = 8 * meta.num_rows * max(meta.num_columns, 1), validate.inflate_limit(path.stat().st_size)
            if decoded > limit:
                raise BadInput(f"{path}: {meta.num_rows} rows x {meta.num_columns} columns would decode to "
                               f"about {decoded} bytes, more than {limit} for a {path.stat().st_size}-byte file")
            t = pq.read_table(path)
        else:
            raise BadInput(f"{path}: expected a .npy/.npz, .csv or .parquet file")
        names = t.column_names  # decoded here: a name may not be UTF-8
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as e:  # ValueError: bad UTF-8
        raise BadInput(f"{path}: not a readable {path.suffix} table ({' '.join(str(e).split())[:200]})") from None
    missing = [c for c in required if c not in names]
    if missing:
        raise BadInput(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(names)[:200]})")
    return t


def ints(a, path: Path, name: str, *, bits: int = 32) -> np.ndarray:
    """An int64 array of integers that fit the lake's INT (``bits`` 32) or BIGINT (64, kept to
    ``validate.MAX_COUNT``); nulls and non-integral values refused."""
    import pyarrow as pa

    if isinstance(a, (pa.Array, pa.ChunkedArray)):
        if a.null_count:
            raise BadInput(f"{path}: column {name} has empty values")
        a = a.to_numpy(zero_copy_only=False)
    a = np.asarray(a)
    lo, hi = (validate.INT32_MIN, validate.INT32_MAX) if bits == 32 else (-validate.MAX_COUNT, validate.MAX_COUNT)
    if a.dtype.kind in "iu":
        validate.int_range(a, lo, hi, str(path), name)
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.isfinite(a).all() and (a == np.round(a)).all():
        validate.int_range(a, lo, hi, str(path), name)
        return a.astype(np.int64)
    raise BadInput(f"{path}: {name} must hold integers (dtype {a.dtype})")


def floats(a, path: Path, name: str, *, nullable: bool = False, float32: bool = False) -> np.ndarray:
    """A float64 array; NaN/Inf refused (NULLs become NaN only when ``nullable``), and with
    ``float32`` values beyond float32's range too (the column is FLOAT)."""
    import pyarrow as pa

    if isinstance(a, (pa.Array, pa.ChunkedArray)):
        if a.null_count and not nullable:
            raise BadInput(f"{path}: column {name} has empty values")
        mask = a.is_null().to_numpy(zero_copy_only=False) if a.null_count else None
        try:
            a = a.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise BadInput(f"{path}: {name} must hold numbers") from None
    else:
        mask = None
        a = np.asarray(a)
        if a.dtype.kind not in "iuf":
            raise BadInput(f"{path}: {name} must hold numbers (dtype {a.dtype})")
    a = a.astype(np.float64)
    validate.finite(a, str(path), name, float32=float32)
    if mask is not None:
        a[mask] = np.nan
    return a


def in_range(a: np.ndarray, lo: int, hi: int, path: Path, what: str) -> None:
    bad = (a < lo) | (a >= hi)
    if bad.any():
        raise BadInput(f"{path}: {what} {int(a[bad][0])} is out of range [{lo}, {hi})")


def unique(a: np.ndarray, path: Path, what: str) -> None:
    u, c = np.unique(a, return_counts=True)
    if (c > 1).any():
        raise BadInput(f"{path}: {what} {int(u[c > 1][0])} appears {int(c[c > 1][0])} times")


def unique_pairs(a: np.ndarray, b: np.ndarray, path: Path) -> None:
    order = np.lexsort((b, a))
    dup = (np.diff(a[order]) == 0) & (np.diff(b[order]) == 0)
    if dup.any():
        k = order[int(np.flatnonzero(dup)[0])]
        raise BadInput(f"{path}: pair ({int(a[k])}, {int(b[k])}) appears more than once")




def read_sparse(path: Path):
    """A ``scipy.sparse.save_npz`` matrix as COO (rows = tokens, columns = features); its zip
    members' declared sizes are checked before scipy inflates anything."""
    import scipy.sparse as sp

    validate.zip_members(require_file(path), npy=True, what="scipy sparse .npz matrix")
    try:
        m = sp.load_npz(path)
        if m.ndim != 2:
            raise BadInput(f"{path}: matrix has {m.ndim} dimensions, expected 2 (tokens x features)")
        coo = m.tocoo()
    except BadInput:
        raise
    except Exception as e:  # BadZipFile, KeyError('format'), ValueError (inconsistent indices)
        raise BadInput(f"{path}: not a scipy sparse .npz matrix ({' '.join(str(e).split())[:200]})") from None
    validate.int_range(coo.shape[0], 0, validate.MAX_COUNT, str(path), "matrix rows")
    in_range(coo.row, 0, coo.shape[0], path, "row (token_id)")
    in_range(coo.col, 0, coo.shape[1], path, "column (feature)")
    return coo
