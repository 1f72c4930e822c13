"""The lake's tables: one Arrow schema per contract table, defined once.

Writers, tests, the catalog views and the dbt sources all read their columns from here.
Partition columns are part of the logical schema (the views expose them) but are not
stored inside the Parquet files: they live in the Hive path
(``<home>/lake/<table>/release=R/layer=L/part-0.parquet``).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

FLOATS = pa.list_(pa.float32())
STRINGS = pa.list_(pa.string())
INTS = pa.list_(pa.int32())
_TS = pa.timestamp("us")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    key: tuple[str, ...]
    description: str = ""
    # trailing partition columns a write may leave out, with the value it then gets; such a
    # write is the whole slice above them and replaces all of their partitions (an activations
    # layer written without ``shard`` is shard 0, and drops the layer's other shards)
    partition_defaults: tuple[tuple[str, object], ...] = ()
    # columns beyond the contract's that a write may leave out (they are then null), e.g. the
    # n_a, n_b that saew coactivation stores with each pair for fct_coactivation_pairs
    optional: tuple[str, ...] = ()

    @property
    def data_schema(self) -> pa.Schema:
        """The schema of the Parquet files (partition columns removed)."""
        return pa.schema([f for f in self.schema if f.name not in self.partition_by])

    def duckdb_type(self, column: str) -> str:
        return arrow_to_duckdb(self.schema.field(column).type)


def arrow_to_duckdb(t: pa.DataType) -> str:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return arrow_to_duckdb(t.value_type) + "[]"
    return {
        pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
        pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
        _TS: "TIMESTAMP",
    }[t]


def _s(*cols: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in cols])


S, I, L, F, D = pa.string(), pa.int32(), pa.int64(), pa.float32(), pa.float64()

_SPECS = [
    TableSpec("saes", _s(
        ("release", S), ("layer", I), ("model", S), ("hook", S), ("d_in", I), ("d_sae", I),
        ("architecture", S), ("k", I), ("normalize", S), ("b_dec", FLOATS),
        ("apply_b_dec_to_input", pa.bool_()),
        ("source_format", S), ("source_path", S), ("source_sha256", S), ("run_id", S),
        ("ingested_at", _TS)),
        ("release", "layer"), ("release", "layer"), "One row per SAE (release, layer)."),
    TableSpec("features", _s(
        ("release", S), ("layer", I), ("feature", I), ("w_enc", FLOATS), ("b_enc", F),
        ("w_dec", FLOATS), ("threshold", F), ("dec_norm", F)),
        ("release", "layer"), ("release", "layer", "feature"),
        "Per-feature SAE parameters: decoder row, encoder column, bias, threshold."),
    TableSpec("descriptions", _s(
        ("release", S), ("layer", I), ("feature", I), ("description", S), ("explainer", S),
        ("source", S)),
        ("release", "layer"), ("release", "layer", "feature"), "One description per feature."),
    TableSpec("embeddings", _s(
        ("release", S), ("layer", I), ("feature", I), ("embedder", S), ("embedding", FLOATS)),
        ("release", "layer", "embedder"), ("release", "layer", "feature", "embedder"),
        "Sentence embeddings of descriptions."),
    TableSpec("tokens", _s(
        ("release", S), ("shard", I), ("token_id", L), ("doc", I), ("pos", I), ("token", S)),
        ("release", "shard"), ("release", "token_id"),
        "Tokens of the harvested corpus; shard: the token shard of a harvest (token_id // "
        "--shard-tokens), written with that shard's activations; 0 for a corpus written whole.",
        partition_defaults=(("shard", 0),)),
    TableSpec("activations", _s(
        ("release", S), ("layer", I), ("shard", I), ("token_id", L), ("feature", I), ("value", F)),
        ("release", "layer", "shard"), ("release", "layer", "token_id", "feature"),
        "Non-zero SAE activations; shard: the token shard of a harvest (token_id // --shard-tokens), "
        "0 for a layer written whole.", partition_defaults=(("shard", 0),)),
    TableSpec("activation_sets", _s(
        ("release", S), ("layer", I), ("n_tokens", L), ("source", S), ("run_id", S)),
        ("release", "layer"), ("release", "layer"),
        "How many tokens an activation set covers (active or not)."),
    TableSpec("matches", _s(
        ("release", S), ("space", S), ("method", S), ("src_layer", I), ("src_feature", I),
        ("dst_layer", I), ("dst_feature", I), ("cost", D), ("cosine", D)),
        ("release", "space", "method", "src_layer"),
        ("release", "space", "method", "src_layer", "src_feature"),
        "One-to-one feature matches between adjacent layers."),
    TableSpec("clusters", _s(
        ("release", S), ("layer", I), ("space", S), ("feature", I), ("cluster", I),
        ("probability", F), ("x", F), ("y", F)),
        ("release", "layer", "space"), ("release", "layer", "space", "feature"),
        "Cluster label per feature (-1 noise, -2 no vector) with 2-D coordinates."),
    TableSpec("cluster_quality", _s(
        ("release", S), ("layer", I), ("space", S), ("n_clusters", I), ("noise_frac", D),
        ("coherence", D), ("silhouette", D), ("params", S),
        ("stability_ari", D), ("silhouette_null", D), ("coherence_null", D), ("largest_share", D),
        ("has_structure", pa.bool_())),
        ("release", "layer", "space"), ("release", "layer", "space"),
        "Quality of one layer's clustering, with its shuffled-label nulls (contract section 6)."),
    TableSpec("transport", _s(
        ("release", S), ("space", S), ("solver", S), ("src_layer", I), ("src_cluster", I),
        ("dst_layer", I), ("dst_cluster", I), ("mass", D), ("cost", D)),
        ("release", "space", "solver", "src_layer"),
        ("release", "space", "solver", "src_layer", "src_cluster", "dst_cluster"),
        "Optimal-transport plans between clusters of adjacent layers (mass in features)."),
    TableSpec("coactivations", _s(
        ("release", S), ("layer", I), ("feature_a", I), ("feature_b", I), ("n_ab", L),
        ("n_a", L), ("n_b", L)),
        ("release", "layer"), ("release", "layer", "feature_a", "feature_b"),
        "Tokens on which two features are both active (a < b, n_ab > 0), with n_a and n_b, "
        "the tokens on which each is active.", optional=("n_a", "n_b")),
    TableSpec("correlations", _s(
        ("release", S), ("src_layer", I), ("src_feature", I), ("dst_layer", I),
        ("dst_feature", I), ("n_src", L), ("n_dst", L), ("n_both", L), ("pearson", D)),
        ("release", "src_layer"),
        ("release", "src_layer", "src_feature", "dst_layer", "dst_feature"),
        "Top correlated feature pairs between adjacent layers."),
    TableSpec("reconstruction", _s(
        ("release", S), ("space", S), ("method", S), ("src_layer", I), ("dst_layer", I),
        ("n_tokens", L), ("fvu", D), ("explained_variance", D)),
        ("release", "space", "method"), ("release", "space", "method", "src_layer", "dst_layer"),
        "Hidden-state reconstruction through matches."),
    TableSpec("training_log", _s(
        ("release", S), ("layer", I), ("step", I), ("tokens_seen", L), ("mse", D), ("fvu", D),
        ("l0", D), ("dead_frac", D)),
        ("release", "layer"), ("release", "layer", "step"), "SAE training curves."),
    TableSpec("communities", _s(
        ("release", S), ("graph", S), ("layer", I), ("feature", I), ("community", I),
        ("algorithm", S), ("modularity", D)),
        ("release", "graph"), ("release", "graph", "layer", "feature"),
        "Communities of co-activation (graph='coactivation') and cross-layer correlation "
        "(graph='correlation') graphs."),
    TableSpec("runs", _s(
        ("run_id", S), ("command", S), ("params", S), ("started_at", _TS),
        ("finished_at", _TS), ("status", S), ("version", S), ("units", STRINGS)),
        ("run_id",), ("run_id",), "One row per writing command: status ok, or partial (killed or failed after "
        "committing the units listed in units)."),
    TableSpec("graph_nodes", _s(
        ("release", S), ("layer", I), ("feature", I), ("n_active", L), ("degree", L),
        ("strength", D)),
        ("release", "layer"), ("release", "layer", "feature"),
        "Nodes (live features) of a layer's co-activation graph (edges: NPMI above a threshold): "
        "tokens active, degree, strength (sum of edge NPMI)."),
    TableSpec("graph_degrees", _s(
        ("release", S), ("layer", I), ("degree", L), ("n_nodes", L), ("n_nodes_random", L)),
        ("release", "layer"), ("release", "layer", "degree"),
        "Degree distribution of a layer's co-activation graph, next to a seeded random graph "
        "G(n, m) with the same nodes and edge count."),
    TableSpec("graph_divergence", _s(
        ("release", S), ("other_release", S), ("layer", I), ("n_nodes", L), ("n_edges", L),
        ("other_n_nodes", L), ("other_n_edges", L), ("npmi_threshold", D), ("min_count", L),
        ("js_divergence", D), ("js_random_baseline", D)),
        ("release", "other_release"), ("release", "other_release", "layer"),
        "Jensen-Shannon divergence (bits, in [0, 1]) between the degree distributions of two "
        "releases' co-activation graphs of one layer, and from a random G(n, m) baseline."),
    TableSpec("examples", _s(
        ("release", S), ("layer", I), ("feature", I), ("kind", S), ("rank", I), ("token_id", L),
        ("tokens", STRINGS), ("acts", FLOATS), ("peak", I), ("value", F)),
        ("release", "layer"), ("release", "layer", "feature", "kind", "rank"),
        "Activation examples per feature: kind 'top' (the K strongest, rank 0 first) or "
        "'quantile' (samples across the activation range); a window of tokens around the peak "
        "token, with the feature's activation on each."),
    TableSpec("feature_stats", _s(
        ("release", S), ("layer", I), ("feature", I), ("max_act", F), ("frac_nonzero", D),
        ("pos_str", STRINGS), ("pos_values", FLOATS), ("neg_str", STRINGS), ("neg_values", FLOATS),
        ("topk_cos_indices", INTS), ("topk_cos_values", FLOATS), ("source", S)),
        ("release", "layer"), ("release", "layer", "feature"),
        "Per-feature statistics from elsewhere (Neuronpedia's features export): max activation, "
        "firing frequency, top positive/negative logits, nearest decoder neighbours."),
    TableSpec("flow_links", _s(
        ("release", S), ("dst_layer", I), ("dst_feature", I), ("src_release", S), ("src_layer", I),
        ("src_feature", I), ("module", S), ("rank", I), ("cosine", D)),
        ("release", "dst_layer"), ("release", "dst_layer", "dst_feature", "module", "rank"),
        "Feature flow (saew flow): for each feature of residual layer dst_layer, its top "
        "predecessors by decoder cosine per module (resid: the residual SAE of the layer before; "
        "mlp_out / attn_out: that block's module SAEs, releases R.mlp_out / R.attn_out); rank 1 = "
        "the largest cosine."),
    TableSpec("interventions", _s(
        ("release", S), ("link", S), ("src_release", S), ("src_layer", I), ("src_feature", I),
        ("dst_release", S), ("dst_layer", I), ("dst_feature", I), ("n_tokens", L),
        ("act_before", D), ("act_after", D), ("control_before", D), ("control_after", D)),
        ("release", "dst_layer"),
        ("release", "link", "src_release", "src_layer", "src_feature", "dst_layer", "dst_feature"),
        "Causal checks of links (saew verify): the target's mean activation over n_tokens windows "
        "where the source is active, clean (act_before) and with the source feature switched off "
        "at its hook (act_after); the same for random active control features."),
]

TABLES: dict[str, TableSpec] = {t.name: t for t in _SPECS}


def spec(name: str) -> TableSpec:
    return TABLES[name]


def parse_key(t: TableSpec, key: str) -> dict:
    """A partition key ``features/release=r/layer=3`` -> ``{"release": "r", "layer": 3}`` (typed)."""
    out: dict = {}
    for seg in key.split("/")[1:]:
        c, v = seg.split("=", 1)
        out[c] = int(v) if pa.types.is_integer(t.schema.field(c).type) else v
    return out
