"""The non-explanation parts of a Neuronpedia export folder: activations, features and UMAP.

Neuronpedia's exporter (``utils/neuronpedia-utils/neuronpedia_utils/export-data.py`` in
hijohnnylin/neuronpedia; column types from ``apps/webapp/prisma/schema.prisma``) writes
``exports/<modelId>/<source>/{explanations,features,activations}/batch-N.jsonl.gz``, one
database row per line, ``layer`` being the source id (``"6-res-jb"``) and ``index`` a string:

* ``activations`` rows (table Activation): id, modelId, layer, index, tokens (string[]),
  values (float[], one per token), maxValue, minValue, maxValueTokenIndex (int), dfa*, bin*, ...
  -> lake table ``examples``: kind 'top', per feature ranked by maxValue descending (ties by
  the row id, then file order), tokens/acts the row's tokens/values as exported, peak =
  maxValueTokenIndex, value = maxValue, token_id NULL (not a token of a harvest here).
* ``features`` rows (table Neuron): modelId, layer, index, maxActApprox, frac_nonzero,
  pos_str/pos_values, neg_str/neg_values (top +/- logits), topkCosSimIndices/topkCosSimValues,
  histograms, ... -> ``feature_stats`` (source 'neuronpedia').
* ``explanations`` rows carry umap_x, umap_y, umap_cluster (Neuronpedia's own UMAP; the
  database default is 0, so a layer whose rows are all x = y = 0 has none) -> ``clusters`` in
  space 'neuronpedia' (x, y, cluster; probability NULL; the layer's other features -2, no vector).
  Of several explanations of a feature the UMAP of the smallest (explainer, description) is kept.

Merge rule, as for descriptions: a layer's new rows replace the stored rows of the same
features, the layer's other stored rows stay.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saew.errors import BadInput
from saew.ingest import validate
from saew.storage.schemas import spec

SPACE = "neuronpedia"


def _num(row: dict, key: str, where: str, *, optional: bool = False) -> float | None:
    """A finite number within float32's range (the columns are FLOAT), or None when optional."""
    v = row.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or abs(v) > validate.FLOAT32_MAX:
        raise BadInput(f"{where}: {key} must be a finite number, got {str(v)[:40]}")
    return float(v)


def _list(row: dict, key: str, kind: type, where: str) -> list:
    """A list of strings, of finite float32 numbers, or of int32 integers."""
    v = row.get(key)
    if v is None:
        return []
    if kind is float:
        ok = isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                         and math.isfinite(x) and abs(x) <= validate.FLOAT32_MAX for x in v)
    elif kind is int:
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                         and validate.INT32_MIN <= x <= validate.INT32_MAX for x in v)
    else:
        ok = isinstance(v, list) and all(isinstance(x, kind) and not isinstance(x, bool) for x in v)
    if not ok:
        name = {str: "strings", float: "finite float32 numbers", int: "int32 integers"}[kind]
        raise BadInput(f"{where}: {key} must be a list of {name}")
    return [float(x) for x in v] if kind is float else list(v)


class ExportTables:
    """What an export folder adds beyond descriptions, gathered per layer before any write."""

    def __init__(self):
        self.acts: dict[int, list[tuple]] = {}    # layer -> (feature, -maxValue, id, seq, tokens, values, peak)
        self.stats: dict[int, dict[int, tuple]] = {}
        self.umap: dict[tuple[int, int], tuple] = {}  # (layer, feature) -> (explainer, desc, x, y, cluster)
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self.acts or self.stats or self.umap)

    def add_activation(self, row: dict, layer: int, feature: int, where: str) -> None:
        tokens = _list(row, "tokens", str, where)
        values = _list(row, "values", float, where)
        if not tokens or len(tokens) != len(values):
            raise BadInput(f"{where}: tokens and values must be non-empty lists of the same length "
                           f"(got {len(tokens)} and {len(values)})")
        top = _num(row, "maxValue", where)
        peak = row.get("maxValueTokenIndex")
        if isinstance(peak, bool) or not isinstance(peak, int) or not 0 <= peak < len(tokens):
            raise BadInput(f"{where}: maxValueTokenIndex must be an integer in 0..{len(tokens) - 1}, "
                           f"got {peak!r}")
        self._seq += 1
        self.acts.setdefault(layer, []).append(
            (feature, -top, str(row.get("id") or ""), self._seq, tokens, values, peak))

    def add_feature(self, row: dict, layer: int, feature: int, where: str) -> None:
        stats = self.stats.setdefault(layer, {})
        if feature in stats:
            raise BadInput(f"{where}: feature {feature} of layer {layer} appears twice in the features batches")
        pos_s, pos_v = _list(row, "pos_str", str, where), _list(row, "pos_values", float, where)
        neg_s, neg_v = _list(row, "neg_str", str, where), _list(row, "neg_values", float, where)
        cos_i, cos_v = _list(row, "topkCosSimIndices", int, where), _list(row, "topkCosSimValues", float, where)
        for a, b, (na, nb) in ((pos_s, pos_v, ("pos_str", "pos_values")), (neg_s, neg_v, ("neg_str", "neg_values")),
                               (cos_i, cos_v, ("topkCosSimIndices", "topkCosSimValues"))):
            if len(a) != len(b):
                raise BadInput(f"{where}: {na} and {nb} differ in length ({len(a)} and {len(b)})")
        frac = _num(row, "frac_nonzero", where, optional=True)
        if frac is not None and not 0 <= frac <= 1:
            raise BadInput(f"{where}: frac_nonzero must be in [0, 1], got {frac}")
        stats[feature] = (_num(row, "maxActApprox", where, optional=True), frac,
                          pos_s, pos_v, neg_s, neg_v, cos_i, cos_v)

    def add_umap(self, row: dict, layer: int, feature: int, where: str, explainer: str, desc: str) -> None:
        x, y = _num(row, "umap_x", where, optional=True), _num(row, "umap_y", where, optional=True)
        if x is None or y is None:
            return
        c = row.get("umap_cluster")
        if c is not None and (isinstance(c, bool) or not isinstance(c, int)):
            raise BadInput(f"{where}: umap_cluster must be an integer, got {str(c)[:40]!r}")
        if c is not None:
            validate.int32(c, where, "umap_cluster")
        cand = (explainer, desc, x, y, -1 if c is None else c)
        key = (layer, feature)
        if key not in self.umap or cand < self.umap[key]:
            self.umap[key] = cand

    # ------------------------------------------------------------------ writing
    def write(self, lake, release: str, d_sae: dict[int, int]) -> list[str]:
        out = []
        for layer in sorted(self.acts):
            n = _merge(lake, "examples", release, layer, self._examples(layer))
            out.append(f"layer {layer}: {len(self.acts[layer])} activation examples ({n} stored)")
        for layer in sorted(self.stats):
            n = _merge(lake, "feature_stats", release, layer, self._stats(layer))
            out.append(f"layer {layer}: statistics of {len(self.stats[layer])} features ({n} stored)")
        umap_layers = sorted({L for L, _ in self.umap})
        for layer in umap_layers:
            t = self._clusters(layer)
            if not pc.any(pc.or_(pc.not_equal(t.column("x"), 0), pc.not_equal(t.column("y"), 0))).as_py():
                continue  # the database default: no UMAP for this source
            n = _merge(lake, "clusters", release, layer, t, space=SPACE, fill=d_sae[layer])
            out.append(f"layer {layer}: Neuronpedia UMAP of {t.num_rows} features (space {SPACE}, {n} rows)")
        return out

    def _examples(self, layer: int) -> pa.Table:
        rows = sorted(self.acts[layer], key=lambda r: r[:4])
        feat = np.asarray([r[0] for r in rows], np.int32)
        starts = np.flatnonzero(np.r_[True, feat[1:] != feat[:-1]]) if len(feat) else np.zeros(0, int)
        rank = np.arange(len(feat)) - np.repeat(starts, np.diff(np.r_[starts, len(feat)]))
        return pa.table({
            "feature": feat, "kind": pa.array(["top"] * len(rows), pa.string()),
            "rank": rank.astype(np.int32), "token_id": pa.nulls(len(rows), pa.int64()),
            "tokens": pa.array([r[4] for r in rows], pa.list_(pa.string())),
            "acts": pa.array([r[5] for r in rows], pa.list_(pa.float32())),
            "peak": pa.array([r[6] for r in rows], pa.int32()),
            "value": pa.array([-r[1] for r in rows], pa.float32())})

    def _stats(self, layer: int) -> pa.Table:
        items = sorted(self.stats[layer].items())
        col = lambda i, t: pa.array([v[i] for _, v in items], t)  # noqa: E731
        return pa.table({
            "feature": pa.array([f for f, _ in items], pa.int32()), "max_act": col(0, pa.float32()),
            "frac_nonzero": col(1, pa.float64()),
            "pos_str": col(2, pa.list_(pa.string())), "pos_values": col(3, pa.list_(pa.float32())),
            "neg_str": col(4, pa.list_(pa.string())), "neg_values": col(5, pa.list_(pa.float32())),
            "topk_cos_indices": col(6, pa.list_(pa.int32())), "topk_cos_values": col(7, pa.list_(pa.float32())),
            "source": pa.array([SPACE] * len(items), pa.string())})

    def _clusters(self, layer: int) -> pa.Table:
        items = sorted((f, v) for (L, f), v in self.umap.items() if L == layer)
        return pa.table({
            "feature": pa.array([f for f, _ in items], pa.int32()),
            "cluster": pa.array([v[4] for _, v in items], pa.int32()),
            "probability": pa.nulls(len(items), pa.float32()),
            "x": pa.array([v[2] for _, v in items], pa.float32()),
            "y": pa.array([v[3] for _, v in items], pa.float32())})


def _merge(lake, table: str, release: str, layer: int, fresh: pa.Table, *, space: str | None = None,
           fill: int | None = None) -> int:
    """Replace the stored rows of ``fresh``'s features in one partition, keep the others; with
    ``fill`` (clusters) every other feature < fill without a row gets cluster -2 (no vector)."""
    schema = spec(table).data_schema
    if space is not None:
        schema = pa.schema([f for f in schema if f.name != "space"])
    cols = ", ".join(f'"{f.name}"' for f in schema)
    part = {"release": release, "layer": int(layer)} | ({"space": space} if space else {})
    where = " AND ".join(f"{k} = ?" for k in part)
    old = lake.query(f"SELECT {cols} FROM {table} WHERE {where}", list(part.values()))
    fresh = fresh.select(schema.names).cast(schema)
    old = old.filter(pc.invert(pc.is_in(old.column("feature"), value_set=fresh.column("feature"))))
    merged = pa.concat_tables([old.cast(schema), fresh])
    if fill is not None:
        have = np.zeros(fill, bool)
        have[merged.column("feature").to_numpy()] = True
        rest = np.flatnonzero(~have).astype(np.int32)
        merged = pa.concat_tables([merged, pa.table({
            "feature": rest, "cluster": np.full(len(rest), -2, np.int32),
            "probability": pa.nulls(len(rest), pa.float32()), "x": pa.nulls(len(rest), pa.float32()),
            "y": pa.nulls(len(rest), pa.float32())}).cast(schema)])
    order = ["feature"] + (["kind", "rank"] if table == "examples" else [])
    merged = merged.sort_by([(c, "ascending") for c in order])
    lake.write(table, merged, **part)
    return merged.num_rows
