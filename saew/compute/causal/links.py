"""Which links ``saew verify`` checks: the link names, the seeded sample, the token windows.

Links (contract section 6):

* ``match/<space>/<method>``: a row of ``matches`` (source feature i at layer l of release R ->
  its match j at the next layer);
* ``flow/<module>``: the best predecessor (lowest rank) of a residual feature j at layer l+1 in
  one module of ``flow_links``: ``resid`` (release R, layer l), ``mlp_out`` / ``attn_out``
  (releases R.mlp_out / R.attn_out, layer l+1). ``flow`` names the three.

Sample: per link family (the match links together, each flow module alone) and layer pair,
``--sample N`` links drawn uniformly without replacement (seeded) among those whose source
feature is active somewhere in the harvested tokens. The match links of one layer pair share
their sample of source features (each source has one match per method), so methods are compared
on the same sources and the same windows.

Windows: for each sampled source feature, its ``--tokens-per-link`` strongest harvested
activations (ties by token_id); each window is the ``--window`` tokens of that document ending at
the active token (its text, re-tokenized by the model's tokenizer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from saew.errors import BadInput
from saew.storage.names import FLOW_MODULES, MODULE_POINTS, RESID_POINT, module_release, null_draw_index

FLOW = "flow"
_SAMPLE_TAG = 0x76657269    # "veri": keeps the sample streams apart from other spawn keys


def source_release(release: str, module: str) -> str:
    """The release holding the SAEs of a flow module: R for ``resid``, R.mlp_out, R.attn_out."""
    return module_release(release, RESID_POINT if module == "resid" else module)


@dataclass
class Job:
    """Links sharing a source SAE and a destination layer: one set of forward passes.

    ``probes``: the sampled source features (sorted); link k reads ``dst_feature[k]`` when
    ``probes[probe[k]]`` is switched off."""
    src_release: str
    src_layer: int
    dst_layer: int
    probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    link: list[str] = field(default_factory=list)
    probe: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dst_feature: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, link: list[str], src_feature: np.ndarray, dst_feature: np.ndarray) -> None:
        feats = np.union1d(self.probes, src_feature).astype(np.int64)
        old = feats.searchsorted(self.probes[self.probe]) if len(self.probe) else self.probe
        self.probes, self.probe = feats, np.concatenate([old, feats.searchsorted(src_feature)])
        self.link += list(link)
        self.dst_feature = np.concatenate([self.dst_feature, np.asarray(dst_feature, np.int64)])


def match_links(lake, release: str) -> list[str]:
    """``match/<space>/<method>`` of the release's matches (null draws after ``random`` left out)."""
    t = lake.query("SELECT DISTINCT space, method FROM matches WHERE release = ? ORDER BY 1, 2", [release])
    return [f"match/{s}/{m}" for s, m in zip(t.column("space").to_pylist(), t.column("method").to_pylist())
            if not null_draw_index(m)]


def flow_modules(lake, release: str) -> list[str]:
    """The modules with flow links into the release's residual layers."""
    from saew.storage.schemas import TABLES

    if "flow_links" not in TABLES or not lake.has_data("flow_links"):
        return []
    t = lake.query("SELECT DISTINCT module FROM flow_links WHERE release = ?", [release])
    return [m for m in FLOW_MODULES if m in set(t.column("module").to_pylist())]


def resolve(lake, release: str, spec: str) -> list[str]:
    """``--link``: ``all`` (every match link and flow module present), ``flow``, ``flow/<module>``
    or ``match/<space>/<method>`` -> link names; unknown or missing -> BadInput."""
    matches = match_links(lake, release)
    if spec == "all":
        links = matches + [f"{FLOW}/{m}" for m in flow_modules(lake, release)]
        if not links:
            raise BadInput(f"--release {release!r}: no matches or flow links to verify "
                           f"(run saew match or saew flow first)")
        return links
    if spec == FLOW or spec.startswith(f"{FLOW}/"):
        want = FLOW_MODULES if spec == FLOW else (spec.split("/", 1)[1],)
        if any(m not in FLOW_MODULES for m in want):
            raise BadInput(f"--link {spec!r}: flow modules are {', '.join(FLOW_MODULES)}")
        missing = [source_release(release, m) for m in want if m != "resid"
                   and not lake.query("SELECT 1 FROM saes WHERE release = ? LIMIT 1",
                                      [source_release(release, m)]).num_rows]
        if missing and (spec != FLOW or len(missing) == len(MODULE_POINTS)):
            raise BadInput(f"--link {spec}: release {release!r} has no module SAEs ({', '.join(missing)}); "
                           f"train them with saew train --hooks resid_post,mlp_out,attn_out")
        have = flow_modules(lake, release)
        links = [f"{FLOW}/{m}" for m in want if m in have]
        if not links:
            raise BadInput(f"--link {spec}: release {release!r} has no flow links (run saew flow first)")
        return links
    parts = spec.split("/")
    if len(parts) != 3 or parts[0] != "match":
        raise BadInput(f"--link {spec!r}: expected all, flow, flow/<module> or match/<space>/<method>")
    if spec not in matches and not lake.query(
            "SELECT 1 FROM matches WHERE release = ? AND space = ? AND method = ? LIMIT 1",
            [release, parts[1], parts[2]]).num_rows:
        known = ", ".join(matches) or "none"
        raise BadInput(f"--link {spec!r}: release {release!r} has no such matches (present: {known})")
    return [spec]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_SAMPLE_TAG, *map(int, key))))


def _draw(n_have: int, n: int, what: str, rng: np.random.Generator) -> np.ndarray:
    if n > n_have:
        raise BadInput(f"--sample {n}: {what} has only {n_have} links whose source feature is "
                       f"active in the harvested tokens")
    return np.sort(rng.choice(n_have, size=n, replace=False))


def _live_sql() -> str:
    """(layer, feature) of every feature with a harvested activation, of the release given as ?."""
    return "SELECT DISTINCT layer, feature FROM activations WHERE release = ?"


def sample_jobs(lake, release: str, links: list[str], n: int, seed: int,
                dst_layers: set[int] | None = None) -> list[Job]:
    """The sampled links, grouped into jobs (one per source release, source and destination layer)."""
    jobs: dict[tuple[str, int, int], Job] = {}
    match = [l for l in links if l.startswith("match/")]
    if match:
        pairs = [tuple(l.split("/")[1:]) for l in match]
        con = lake.connect(["matches", "activations"])
        try:
            con.register("wanted", pa.table({"space": [p[0] for p in pairs], "method": [p[1] for p in pairs]}))
            t = con.execute(f"""
                SELECT m.src_layer, m.dst_layer, m.src_feature, m.dst_feature,
                       'match/' || m.space || '/' || m.method AS link, a.feature IS NOT NULL AS live
                FROM matches m
                JOIN wanted w ON w.space = m.space AND w.method = m.method
                LEFT JOIN ({_live_sql()}) a ON a.layer = m.src_layer AND a.feature = m.src_feature
                WHERE m.release = ?
                ORDER BY m.src_layer, m.src_feature, link""", [release, release]).to_arrow_table()
        finally:
            con.close()
        _add_sampled(jobs, t, release, release, n, seed, dst_layers, "match", by_source=True)
    for link in links:
        if not link.startswith(f"{FLOW}/"):
            continue
        module = link.split("/", 1)[1]
        src_release = source_release(release, module)
        t = lake.query(f"""
            WITH best AS (
                SELECT src_layer, dst_layer, src_feature, dst_feature
                FROM flow_links
                WHERE release = ? AND module = ? AND src_release = ?
                QUALIFY "rank" = min("rank") OVER (PARTITION BY dst_layer, dst_feature)
            )
            SELECT b.*, '{link}' AS link, a.feature IS NOT NULL AS live
            FROM best b
            LEFT JOIN ({_live_sql()}) a ON a.layer = b.src_layer AND a.feature = b.src_feature
            ORDER BY b.dst_layer, b.dst_feature""", [release, module, src_release, src_release])
        _add_sampled(jobs, t, release, src_release, n, seed, dst_layers, link, by_source=False)
    return [jobs[k] for k in sorted(jobs, key=lambda k: (k[2], k[1], k[0]))]


def _add_sampled(jobs: dict, t: pa.Table, release: str, src_release: str, n: int, seed: int,
                 dst_layers: set[int] | None, family: str, by_source: bool) -> None:
    """Per layer pair: draw ``n`` source features (match links: every link of a drawn source is
    kept) or ``n`` links (flow: one per destination feature), add them to their job."""
    cols = {c: t.column(c).to_numpy() for c in ("src_layer", "dst_layer", "src_feature", "dst_feature")}
    link = np.asarray(t.column("link").to_pylist(), dtype=object)
    live = t.column("live").to_numpy(zero_copy_only=False).astype(bool)
    fam = FLOW_MODULES.index(family.split("/")[1]) + 1 if family.startswith(FLOW) else 0
    for (sl, dl) in sorted(set(zip(cols["src_layer"].tolist(), cols["dst_layer"].tolist()))):
        if dst_layers is not None and dl not in dst_layers:
            continue
        rows = np.flatnonzero((cols["src_layer"] == sl) & (cols["dst_layer"] == dl) & live)
        what = f"{family} links {src_release} layer {sl} -> {release} layer {dl}"
        rng = _rng(seed, fam, sl, dl)
        if by_source:
            feats = np.unique(cols["src_feature"][rows])
            keep = feats[_draw(len(feats), n, what, rng)]
            rows = rows[np.isin(cols["src_feature"][rows], keep)]
        else:
            rows = rows[_draw(len(rows), n, what, rng)]
        job = jobs.setdefault((src_release, int(sl), int(dl)), Job(src_release, int(sl), int(dl)))
        job.add(list(link[rows]), cols["src_feature"][rows], cols["dst_feature"][rows])


def window_texts(lake, job: Job, per_link: int, window: int) -> tuple[np.ndarray, list[str]]:
    """(probe index of each window, the window's text): the ``per_link`` strongest activations
    of each probe feature at the source layer, each with the ``window`` tokens of its document
    that end at the active token. Sorted by probe."""
    con = lake.connect(["activations", "tokens"])
    try:
        con.register("probes", pa.table({"feature": job.probes.astype(np.int32),
                                         "probe": np.arange(len(job.probes), dtype=np.int64)}))
        t = con.execute("""
            WITH top AS (
                SELECT p.probe, a.token_id, a.value
                FROM activations a JOIN probes p ON p.feature = a.feature
                WHERE a.release = ? AND a.layer = ?
                QUALIFY row_number() OVER (PARTITION BY p.probe ORDER BY a.value DESC, a.token_id) <= ?
            ), anchor AS (
                SELECT top.probe, top.token_id, t.doc, t.pos
                FROM top JOIN tokens t ON t.release = ? AND t.token_id = top.token_id
            )
            SELECT c.probe, c.token_id, string_agg(w.token, '' ORDER BY w.pos) AS text
            FROM anchor c JOIN tokens w
              ON w.release = ? AND w.doc = c.doc AND w.pos BETWEEN c.pos - ? AND c.pos
            GROUP BY c.probe, c.token_id
            ORDER BY c.probe, c.token_id""",
            [job.src_release, job.src_layer, int(per_link), job.src_release, job.src_release,
             int(window) - 1]).to_arrow_table()
    finally:
        con.close()
    if t.num_rows == 0:
        raise BadInput(f"release {job.src_release!r} layer {job.src_layer}: no harvested tokens for its "
                       f"active features (run saew harvest --release {job.src_release})")
    return t.column("probe").to_numpy(), t.column("text").to_pylist()
