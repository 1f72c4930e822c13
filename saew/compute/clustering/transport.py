"""``saew transport``: optimal transport between the clusters of adjacent layers, one space.

Definition (../shared/CONTRACT.md section 5, "Optimal transport between clusters"; solvers from
POT, Flamary et al., JMLR 2021; Sinkhorn: Cuturi, NeurIPS 2013):

- Buckets at a layer: every cluster a >= 0, plus one unclustered bucket (stored as cluster -1)
  gathering the features labelled -1 or -2 (present only when it has members).
  Weight of a bucket = its size / number of features at the layer.
- Vectors: unit-normalised decoder rows (decoder space) or unit-normalised description
  embeddings (text space). Centroid of a cluster = mean of its members' unit vectors.
- C_ab = 1 - cos(centroid_a, centroid_b) for clusters a, b >= 0; any pair involving an
  unclustered bucket costs m = numpy's median of that cluster-to-cluster block (1.0 when one
  side has no cluster at all, i.e. the block is empty).
- ``emd`` (default): the exact plan, POT ``ot.emd``. ``sinkhorn``: entropic, reg = 0.05 * m,
  POT ``ot.sinkhorn`` (log-domain fallback if the plain iteration underflows).
- Stored mass = plan_ab * n_l (feature units: a row sums to its bucket's size); masses below
  1e-9 are dropped; cost = C_ab.  When widths differ, column sums are n_l * weight_b.

Each layer pair is a unit (``transport_unit``, through ``--executor``; committed as it is done,
so a failure keeps the pairs before it and a re-run does only the rest). A unit reads its two
layers' vectors itself (the driver checks every layer's labels first and ships only those), so
under Ray the reading and the centroids, most of the step's time, run in the workers; the pairs
run as contiguous chains (``Executor.map(chained=True)``), each reusing the previous pair's
destination buckets as its source, as the serial run does.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from saew.compute.options import add_executor_arguments
from saew.errors import BadInput
from saew.storage.names import SPACES

SOLVERS = ("emd", "sinkhorn")
MIN_MASS = 1e-9
SINKHORN_REG = 0.05
LOCAL_WORKERS = 1    # --executor local: pairs in this process unless --workers says otherwise


@dataclass(frozen=True)
class Buckets:
    ids: np.ndarray          # int32 [K]: cluster ids (ascending), then -1 when present
    sizes: np.ndarray        # float64 [K]: member counts
    centroids: np.ndarray    # float64 [K, d]: member means of unit vectors (row of -1 unused)
    n: int                   # number of features at the layer


@dataclass(frozen=True)
class Plan:
    src: np.ndarray          # int32 src cluster ids per stored row
    dst: np.ndarray
    mass: np.ndarray         # float64, feature units
    cost: np.ndarray         # float64, C_ab
    objective: float         # sum plan_ab * C_ab over the normalised plan


def buckets(labels: np.ndarray, unit: np.ndarray) -> Buckets:
    """Cluster buckets (ascending id) plus the unclustered bucket (-1) of one layer.

    Centroid_a = (1 / s_a) sum_{i in a} u_i over the unit vectors u of a's members.
    """
    from saew.compute.clustering.quality import cluster_sums

    labels = np.asarray(labels)
    ids, sizes, cent = cluster_sums(unit, labels)
    cent /= np.maximum(sizes, 1)[:, None]
    n_un = int((labels < 0).sum())
    if n_un:
        ids = np.append(ids, -1)
        sizes = np.append(sizes, float(n_un))
        cent = np.vstack([cent, np.zeros((1, unit.shape[1]))])
    return Buckets(ids.astype(np.int32), sizes, cent, len(labels))


def cost_matrix(a: Buckets, b: Buckets) -> np.ndarray:
    """C_ab = 1 - cos(centroid_a, centroid_b); unclustered rows/columns = median of that block."""
    ka, kb = int((a.ids >= 0).sum()), int((b.ids >= 0).sum())
    if ka and kb:
        block = 1.0 - _unit(a.centroids[:ka]) @ _unit(b.centroids[:kb]).T
    else:
        block = np.zeros((ka, kb))
    med = float(np.median(block)) if block.size else 1.0
    c = np.full((len(a.ids), len(b.ids)), med)
    c[:ka, :kb] = block
    return c


def _unit(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(n > 0, n, 1)


def median_cost(a: Buckets, b: Buckets, c: np.ndarray) -> float:
    """numpy's median of the cluster-to-cluster block (1.0 if empty)."""
    ka, kb = int((a.ids >= 0).sum()), int((b.ids >= 0).sum())
    return float(np.median(c[:ka, :kb])) if ka and kb else 1.0


def solve(a: Buckets, b: Buckets, solver: str = "emd") -> Plan:
    """The OT plan between two layers' buckets, as stored rows (mass in feature units)."""
    import ot

    c = cost_matrix(a, b)
    wa, wb = a.sizes / a.n, b.sizes / b.n
    if solver == "emd":
        plan = ot.emd(wa, wb, c, numItermax=max(100_000, 50 * c.size))
    elif solver == "sinkhorn":
        reg = SINKHORN_REG * median_cost(a, b, c)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = ot.sinkhorn(wa, wb, c, reg=reg, numItermax=10_000, stopThr=1e-9)
            if not np.isfinite(plan).all() or abs(plan.sum() - 1) > 1e-3:
                plan = ot.sinkhorn(wa, wb, c, reg=reg, method="sinkhorn_log",
                                   numItermax=10_000, stopThr=1e-9)
    else:
        raise BadInput(f"--solver {solver!r}: expected one of {', '.join(SOLVERS)}")
    plan = np.asarray(plan, dtype=np.float64)
    mass = plan * a.n
    i, j = np.nonzero(mass >= MIN_MASS)
    return Plan(a.ids[i], b.ids[j], mass[i, j], c[i, j], float((plan * c).sum()))


def load_labels(lake, release: str, layer: int, space: str) -> np.ndarray:
    """Cluster labels of every feature of a layer (BadInput when the layer is not clustered)."""
    from saew.storage.saes import d_sae

    n = d_sae(lake, release, layer)
    t = lake.query("SELECT feature, cluster FROM clusters WHERE release = ? AND layer = ? "
                   "AND space = ?", [release, int(layer), space])
    if t.num_rows == 0:
        raise BadInput(f"release {release!r} layer {layer}: no {space}-space clusters; run "
                       f"saew cluster --release {release} --space {space} first")
    lab = np.full(n, -2, np.int32)   # features absent from the clusters table: no vector
    f = t.column("feature").to_numpy()
    if f.max() >= n:
        raise BadInput(f"release {release!r} layer {layer}: clusters name features beyond d_sae {n}")
    lab[f] = t.column("cluster").to_numpy()
    return lab


def unit_vectors(lake, release: str, layer: int, space: str, embedder: str | None) -> np.ndarray:
    """Unit-normalised decoder rows or description embeddings [d_sae, dim], float64 (zeros where none)."""
    from saew.storage.saes import d_sae, load_decoder

    if space == "decoder":
        return _unit(load_decoder(lake, release, layer).astype(np.float64))
    from saew.storage.reads import load_embeddings

    feats, emb = load_embeddings(lake, release, layer, embedder)
    out = np.zeros((d_sae(lake, release, layer), emb.shape[1] if emb.ndim == 2 else 1))
    out[feats] = _unit(emb.astype(np.float64))
    return out


def add_arguments(p) -> None:
    p.add_argument("--release", required=True)
    p.add_argument("--space", required=True, choices=SPACES,
                   help="decoder (decoder rows) or text (description embeddings)")
    p.add_argument("--solver", choices=SOLVERS, default="emd",
                   help="emd: exact plan (default; entropic blur inflates split and merge); "
                        "sinkhorn: entropic, reg = 0.05 x median cost")
    p.add_argument("--embedder", default=None,
                   help="text space: which embeddings (default: the only one present, else "
                        "all-MiniLM-L6-v2)")
    add_executor_arguments(p, "layer pairs", LOCAL_WORKERS)


def run(args, ctx) -> str:
    from saew.compute.options import executor_from_args
    from saew.compute.units import Units, pair_unit
    from saew.progress import progress
    from saew.storage.saes import require_release

    lake, release = ctx.lake, args.release
    ls = require_release(lake, release)
    if len(ls) < 2:
        raise BadInput(f"--release {release!r}: transport needs two ingested layers, found {len(ls)}")
    ex = executor_from_args(args, "cpu", local_workers=LOCAL_WORKERS)
    embedder = None
    if args.space == "text":
        from saew.storage.reads import pick_embedder

        embedder = pick_embedder(lake, release, args.embedder)
    labels = {L: load_labels(lake, release, L, args.space) for L in ls}   # every layer checked first
    pairs = list(zip(ls, ls[1:]))
    units = Units(ctx, [pair_unit(*p) for p in pairs])
    todo = [p for p in pairs if pair_unit(*p) in units.todo]
    # consecutive pairs in one process (this one, or one Ray chain task) share a layer's buckets
    reuse = ctx.run_id if ex.chains_share_process(len(todo)) else None
    jobs = ((str(lake.home), release, int(l0), int(l1), labels[l0], labels[l1], args.space, embedder,
             args.solver, reuse) for l0, l1 in todo)
    write = partial(write_plan, release=release, space=args.space, solver=args.solver)
    try:
        lines = [line for _, line in progress(units.map_commit(ex, transport_unit, jobs, write, chained=True),
                                              total=len(todo), desc="transport")]
    finally:
        _LAST.clear()
    return (f"transport ({args.solver}, {args.space}) for release {release!r}\n"
            + "\n".join(lines + ([units.note()] if units.skipped else [])))


# the destination buckets of this process's last unit, (run id, release, space, layer) -> Buckets:
# the source of the next pair when the units run one after another in one process
_LAST: dict[tuple, Buckets] = {}


def transport_unit(home: str, release: str, l0: int, l1: int, lab0: np.ndarray, lab1: np.ndarray,
                   space: str, embedder: str | None, solver: str, reuse: str | None = None
                   ) -> tuple[Plan, int, int]:
    """One unit of ``saew transport`` (in this process, a worker process or a Ray task): the plan
    of the layer pair l0 -> l1 of the lake at ``home`` (``solve``; both layers' vectors read
    here, so a task needs only the labels) and its bucket counts. ``reuse`` (the run id, when
    the units run one after another in one process): l1's buckets kept for the next pair."""
    from saew.storage.lake import Lake

    lake = Lake(home)
    a = _LAST.pop((reuse, release, space, l0), None) if reuse else None
    _LAST.clear()
    if a is None:
        a = buckets(lab0, unit_vectors(lake, release, l0, space, embedder))
    b = buckets(lab1, unit_vectors(lake, release, l1, space, embedder))
    if reuse:
        _LAST[(reuse, release, space, l1)] = b
    if (a.ids >= 0).any() and (b.ids >= 0).any() and a.centroids.shape[1] != b.centroids.shape[1]:
        raise BadInput(f"release {release!r}: {space} vectors of layers {l0} and {l1} differ in width")
    return solve(a, b, solver), len(a.ids), len(b.ids)


def write_plan(lake, unit: str, result: tuple, release: str, space: str, solver: str) -> str:
    """A unit's ``transport`` rows (the partition of its source layer); its output line."""
    from saew.compute.units import unit_layers

    (p, ka, kb), (l0, l1) = result, unit_layers(unit)
    lake.write("transport", {"src_cluster": p.src, "dst_layer": np.full(len(p.src), l1, np.int32),
                             "dst_cluster": p.dst, "mass": p.mass, "cost": p.cost},
               release=release, space=space, solver=solver, src_layer=int(l0))
    return f"{l0}->{l1}: {ka}x{kb} buckets, objective {p.objective:.4f}"
