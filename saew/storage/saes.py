"""How an SAE is stored: one ``saes`` row and one ``features`` partition per (release, layer).

Both ``ingest sae`` (weights from files) and ``train`` (weights we trained) go through
``write_sae``; every compute step reads weights back with ``load_sae``.
The in-memory form is :class:`saew.sae.params.SAEParams`.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams
from saew.storage.lake import Lake, float_lists, list_matrix


def write_sae(lake: Lake, release: str, layer: int, p: SAEParams, *, source_format: str,
              source_path: str, source_sha256: str, run_id: str) -> None:
    """Stage the ``saes`` row and the ``features`` partition of one SAE (replacing them).

    Refuses a d_in that differs from the release's other layers.
    """
    other = lake.query("SELECT DISTINCT d_in FROM saes WHERE release = ? AND layer <> ?",
                       [release, int(layer)]).column("d_in").to_pylist()
    if other and other != [p.d_in]:
        raise BadInput(f"{source_path}: d_in {p.d_in} differs from release {release!r}'s d_in {other[0]}")
    thr = p.threshold
    lake.write("saes", {
        "model": [p.model], "hook": [p.hook], "d_in": [p.d_in], "d_sae": [p.d_sae],
        "architecture": [p.architecture], "k": [p.k], "normalize": [p.normalize],
        "apply_b_dec_to_input": [bool(p.apply_b_dec_to_input)],
        "b_dec": float_lists(p.b_dec.reshape(1, -1)), "source_format": [source_format],
        "source_path": [source_path], "source_sha256": [source_sha256], "run_id": [run_id],
        "ingested_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
    }, release=release, layer=int(layer))
    import pyarrow as pa

    lake.write("features", {
        "feature": np.arange(p.d_sae, dtype=np.int32),
        "w_enc": float_lists(p.w_enc.T),
        "b_enc": p.b_enc.astype(np.float32),
        "w_dec": float_lists(p.w_dec),
        "threshold": pa.nulls(p.d_sae, pa.float32()) if thr is None else thr.astype(np.float32),
        "dec_norm": np.linalg.norm(p.w_dec.astype(np.float32), axis=1).astype(np.float32),
    }, release=release, layer=int(layer))


def layers(lake: Lake, release: str) -> list[int]:
    """Ingested layers of a release, ascending ("adjacent" = consecutive in this list)."""
    return lake.query("SELECT layer FROM saes WHERE release = ? ORDER BY layer",
                      [release]).column("layer").to_pylist()


def require_release(lake: Lake, release: str) -> list[int]:
    ls = layers(lake, release)
    if not ls:
        raise BadInput(f"--release {release!r}: no SAE ingested for this release")
    return ls


def d_sae(lake: Lake, release: str, layer: int) -> int:
    """d_sae of an ingested SAE, or BadInput when (release, layer) has none."""
    r = lake.query("SELECT d_sae FROM saes WHERE release = ? AND layer = ?", [release, int(layer)])
    if r.num_rows == 0:
        raise BadInput(f"release {release!r} layer {layer}: no SAE ingested there")
    return int(r.column("d_sae")[0].as_py())


def load_sae(lake: Lake, release: str, layer: int) -> SAEParams:
    """Read one SAE's weights back from the lake."""
    meta = lake.query("SELECT * FROM saes WHERE release = ? AND layer = ?", [release, int(layer)])
    if meta.num_rows == 0:
        raise BadInput(f"release {release!r} layer {layer}: no SAE ingested there")
    m = {c: meta.column(c)[0].as_py() for c in meta.column_names}
    f = lake.query("SELECT w_enc, b_enc, w_dec, threshold FROM features "
                   "WHERE release = ? AND layer = ? ORDER BY feature", [release, int(layer)])
    thr_col = f.column("threshold")
    has_thr = thr_col.null_count == 0 and f.num_rows > 0
    thr = thr_col.to_numpy(zero_copy_only=False).astype(np.float32) if has_thr else None
    return SAEParams(
        w_enc=np.ascontiguousarray(list_matrix(f.column("w_enc")).T),
        b_enc=f.column("b_enc").to_numpy(zero_copy_only=False).astype(np.float32),
        w_dec=list_matrix(f.column("w_dec")),
        b_dec=np.asarray(m["b_dec"], dtype=np.float32),
        architecture=m["architecture"], threshold=thr, k=m["k"],
        normalize=m["normalize"] or "none",
        apply_b_dec_to_input=bool(m["apply_b_dec_to_input"]), model=m["model"] or "", hook=m["hook"] or "")
