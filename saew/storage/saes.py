"""How an SAE is stored: one ``saes`` row and one ``features`` partition per (release, layer),
and, for SAEs we trained, an SAELens folder ``<home>/saes/<release>/<hook>``.

Both ``ingest sae`` (weights from files) and ``train`` (weights we trained) go through
``write_sae``; every compute step reads weights back with ``load_sae``. ``train`` writes each
layer's folder into ``stage_saelens_folder`` so it is committed with that layer's rows.
The in-memory form is :class:`saew.sae.params.SAEParams`.

Re-ingesting (release, layer) with other weights drops, in the same unit, every row derived
from the old SAE (``derived_rows``); identical weights change nothing.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from saew.errors import BadInput
from saew.sae.params import SAEParams
from saew.storage.lake import Lake, check_release, float_lists, list_matrix
from saew.storage.schemas import TABLES

_HOOK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# tables never dropped by a re-ingest: the SAE itself (rewritten), the corpus, the run log
KEPT_TABLES = ("saes", "features", "tokens", "runs")
# tables of text about a feature, which stays true of a feature index that still exists
TEXT_TABLES = ("descriptions", "embeddings")
_LAYER_COLS = ("layer", "src_layer", "dst_layer")


def derived_rows(table: str) -> str | None:
    """SQL condition (parameters: release, layer) for the rows of ``table`` that refer to one
    SAE's features, or None when the table has none: a (release column, layer column) pair
    equal to (release, layer), where ``src_release`` / ``dst_release`` pair with ``src_layer`` /
    ``dst_layer`` when the table has them, and ``other_release`` with ``layer``."""
    names = TABLES[table].schema.names
    if table in KEPT_TABLES or table in TEXT_TABLES:
        return None
    pairs = []
    for lc in _LAYER_COLS:
        if lc not in names:
            continue
        own = lc.split("_")[0] + "_release"   # src_layer pairs with src_release, if there is one
        rel = own if lc != "layer" and own in names else "release"
        pairs.append((rel, lc))
        if lc == "layer" and "other_release" in names:
            pairs.append(("other_release", lc))
    if not pairs:
        return None
    return "(" + " OR ".join(f'("{r}" = $1 AND "{c}" = $2)' for r, c in pairs) + ")"


def _same_weights(lake: Lake, release: str, layer: int, p: SAEParams) -> bool:
    old = load_sae(lake, release, layer)
    arrays = [(old.w_enc, p.w_enc), (old.w_dec, p.w_dec), (old.b_enc, p.b_enc), (old.b_dec, p.b_dec)]
    if (old.threshold is None) != (p.threshold is None) or old.architecture != p.architecture or old.k != p.k \
            or old.normalize != (p.normalize or "none") or bool(old.apply_b_dec_to_input) != bool(p.apply_b_dec_to_input):
        return False
    if p.threshold is not None:
        arrays.append((old.threshold, p.threshold))
    return all(a.shape == b.shape and np.array_equal(a, np.asarray(b, dtype=np.float32)) for a, b in arrays)


def drop_derived(lake: Lake, release: str, layer: int, d_sae: int) -> dict[str, int]:
    """Stage the removal of every row derived from the SAE at (release, layer) (texts: only
    those of features >= the new ``d_sae``); rows dropped per table."""
    out = {}
    for name in TABLES:
        cond = derived_rows(name)
        if name in TEXT_TABLES:
            cond = '("release" = $1 AND "layer" = $2 AND "feature" >= $3)'
        if cond is None:
            continue
        args = [release, int(layer)] + ([int(d_sae)] if "$3" in cond else [])
        n = lake.delete_rows(name, cond, args)
        if n:
            out[name] = n
    return out


def stage_saelens_folder(lake: Lake, release: str, hook: str) -> Path:
    """The staging folder of ``<home>/saes/<release>/<hook>`` (write the SAELens files there);
    it replaces that folder atomically with the unit's lake rows (inside a transaction)."""
    check_release(release)
    if not _HOOK_RE.fullmatch(hook) or hook in {".", ".."}:
        raise BadInput(f"hook {hook!r}: not a valid SAE folder name")
    return lake.stage_dir(f"saes/{release}/{hook}")


def saelens_folder(lake: Lake, release: str, hook: str) -> Path:
    """Where ``stage_saelens_folder``'s folder appears once committed."""
    return lake.home / "saes" / release / hook


def write_sae(lake: Lake, release: str, layer: int, p: SAEParams, *, source_format: str,
              source_path: str, source_sha256: str, run_id: str) -> None:
    """Stage the ``saes`` row and the ``features`` partition of one SAE (replacing them).

    Refuses a d_in that differs from the release's other layers. Identical weights already
    stored there change nothing; other weights also drop the old SAE's derived rows
    (``drop_derived``) and note one line saying what was dropped.
    """
    other = lake.query("SELECT DISTINCT d_in FROM saes WHERE release = ? AND layer <> ?",
                       [release, int(layer)]).column("d_in").to_pylist()
    if other and other != [p.d_in]:
        raise BadInput(f"{source_path}: d_in {p.d_in} differs from release {release!r}'s d_in {other[0]}")
    had = lake.query("SELECT source_sha256 FROM saes WHERE release = ? AND layer = ?",
                     [release, int(layer)]).column("source_sha256").to_pylist()
    if had:
        # the same file (sha256) is checked weight by weight (a factory may reuse a sha); another
        # file is other weights without reading the old SAE back
        if had[0] == source_sha256 and _same_weights(lake, release, layer, p):
            return
        dropped = drop_derived(lake, release, layer, p.d_sae)
        if dropped:
            what = ", ".join(f"{n} {t}" for t, n in dropped.items())
            lake.notes.append(f"release {release!r} layer {layer}: new weights; dropped the old "
                              f"SAE's derived rows: {what}")
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


def load_decoder(lake: Lake, release: str, layer: int) -> np.ndarray:
    """The decoder rows [d_sae, d_in] float32 of one ingested SAE, by feature (only that column
    is read: half of ``load_sae``'s bytes)."""
    t = lake.query("SELECT w_dec FROM features WHERE release = ? AND layer = ? ORDER BY feature",
                   [release, int(layer)])
    if t.num_rows == 0:
        raise BadInput(f"release {release!r} layer {layer}: no SAE ingested there")
    return list_matrix(t.column("w_dec"))


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
