"""What a release's activations feed: the tables computed from them, dropped when they are replaced.

A harvest (or ``saew ingest activations``, or a training run that harvests) replaces a release's
``activations``, ``activation_sets`` and ``tokens``. Every row computed from the replaced codes
is then stale: its counts are over a token set that is gone (a co-activation count n_ab over the
old tokens divided by the new N is not an NPMI; dbt's range tests fail on it), and its token ids
point into a replaced ``tokens`` table. ``drop_from_activations`` stages, in the replacing unit,
the removal of those rows, so the lake never mixes results of two activation sets; the command
says what it dropped and what recomputes it. (New SAE weights drop more: every row derived from
the old SAE, ``storage.saes.drop_derived``, activations included.)

``FROM_ACTIVATIONS`` is the one list of those tables, each with the rows that depend on a
(release, layers) activation set and the command that recomputes them (in pipeline order, so
the note lists the commands in the order to run them).
"""
from __future__ import annotations

from dataclasses import dataclass

from saew.storage.schemas import spec


@dataclass(frozen=True)
class Derived:
    table: str
    release: str               # the column naming the release whose activations the row came from
    layers: tuple[str, ...]    # columns naming the layers it came from (any of them); () = all rows
    command: str               # what recomputes it

    def where(self, layers: list[int]) -> str:
        """SQL over the table's columns: $1 the release; the layers inlined (ints)."""
        w = f"{self.release} = $1"
        if self.layers:
            ls = ", ".join(str(int(L)) for L in layers)
            w += " AND (" + " OR ".join(f"{c} IN ({ls})" for c in self.layers) + ")"
        return w

    def by_partition(self) -> bool:
        """Whether the dependent rows are whole partitions (release, layer): removed without a read."""
        key = (self.release, *self.layers)
        return len(self.layers) <= 1 and spec(self.table).partition_by[:len(key)] == key


FROM_ACTIVATIONS: tuple[Derived, ...] = (
    Derived("coactivations", "release", ("layer",), "saew coactivation"),
    Derived("correlations", "release", ("src_layer", "dst_layer"), "saew correlate"),
    Derived("graph_nodes", "release", ("layer",), "saew communities"),
    Derived("graph_degrees", "release", ("layer",), "saew communities"),
    Derived("graph_divergence", "release", ("layer",), "saew communities"),
    Derived("graph_divergence", "other_release", ("layer",), "saew communities"),
    # a community detection runs over a release's whole graph: one replaced layer changes all
    Derived("communities", "release", (), "saew communities"),
    Derived("reconstruction", "release", ("src_layer", "dst_layer"), "saew evaluate"),
    Derived("interventions", "src_release", ("src_layer",), "saew verify"),
)


def drop_from_activations(lake, release: str, layers: list[int]) -> list[Derived]:
    """Stage (inside the caller's unit) the removal of every row computed from the activations of
    ``release`` at ``layers``, and note one line saying what went (``Lake.notes``, printed after
    the command's output); the entries that had rows."""
    dropped = []
    for d in FROM_ACTIVATIONS if layers else ():
        if not lake.has_data(d.table):
            continue
        where = d.where(layers)
        n = lake.query(f"SELECT count(*) AS n FROM {d.table} WHERE {where}", [release]).column("n")[0].as_py()
        if not n:
            continue
        if d.by_partition() and d.layers:
            for L in layers:
                lake.delete_partition(d.table, **{d.release: release, d.layers[0]: int(L)})
        elif d.by_partition():
            lake.delete_partition(d.table, **{d.release: release})
        else:
            lake.delete_rows(d.table, where, [release])
        dropped.append(d)
    if dropped:
        tables = ", ".join(dict.fromkeys(d.table for d in dropped))
        cmds = ", ".join(dict.fromkeys(d.command for d in dropped))
        lake.notes.append(f"release {release!r}: new activations; dropped the rows computed from the "
                          f"old ones ({tables}); re-run {cmds} to recompute them")
    return dropped
