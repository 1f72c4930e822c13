"""The dbt project: `saew build` on a small hand-made warehouse, marts checked against independent
Python computations of the contract formulas (section 5), an empty-warehouse build, and docs."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.factories_dbt import built_small_warehouse, mart

PROJECT = Path(__file__).resolve().parents[1]
TOL = 1e-9


@pytest.fixture(scope="module")
def built():
    return built_small_warehouse()


# --------------------------------------------------------------------------- oracles
def xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


def links(w) -> list[tuple[str, str, str, str, str]]:
    """(cluster_space, link, kind, space, method) of the small warehouse."""
    out = []
    for cs in ("decoder", "text"):
        for space, method in sorted({(s, m) for s, m, _ in w.perms}):
            out.append((cs, f"match/{space}/{method}", "match", space, method))
    out.append(("decoder", "transport/decoder/emd", "transport", "decoder", "emd"))
    return out


def layer_pairs(w, cs: str, kind: str, space: str, method: str) -> list[int]:
    if kind == "match":
        srcs = sorted(l for s, m, l in w.perms if (s, m) == (space, method))
    else:
        srcs = sorted({t[0] for t in w.transport})
    return [l for l in srcs if (cs, l) in w.labels and (cs, l + 1) in w.labels]


def oracle_flows(w, cs, kind, space, method, l):
    """flows[(a, b)] in source units, dst_flows[(a, b)] in destination units, sizes at l and l'."""
    src, dst = np.array(w.labels[(cs, l)]), np.array(w.labels[(cs, l + 1)])
    s = {int(a): int((src == a).sum()) for a in np.unique(src) if a >= 0}
    s2 = {int(b): int((dst == b).sum()) for b in np.unique(dst) if b >= 0}
    flows: dict[tuple[int, int], float] = defaultdict(float)
    dflows: dict[tuple[int, int], float] = defaultdict(float)
    if kind == "match":
        perm = w.perms[(space, method, l)]
        for i, a in enumerate(src):
            if a < 0 or perm[i] < 0:
                continue
            b = int(dst[perm[i]])
            b = b if b >= 0 else (-1 if b == -1 else -2)
            flows[(int(a), b)] += 1
            dflows[(int(a), b)] += 1
    else:
        ratio = w.widths[l + 1] / w.widths[l]
        for sl, a, b, mass in w.transport:
            if sl == l and a >= 0:
                b = b if b >= 0 else -1
                flows[(a, b)] += mass
                dflows[(a, b)] += mass * ratio
    return flows, dflows, s, s2


def oracle_fates(w, cs, kind, space, method, l):
    flows, dflows, s, s2 = oracle_flows(w, cs, kind, space, method, l)
    fates = {}
    for a, size in s.items():
        row = {b: n for (aa, b), n in flows.items() if aa == a}
        m = {b: n / size for b, n in row.items() if b >= 0}
        purity = max(m.values(), default=0.0)
        to_clusters = sum(n for b, n in row.items() if b >= 0)
        leak = 1 - to_clusters / size
        t = {b: n / to_clusters for b, n in row.items() if b >= 0} if to_clusters > 0 else {}
        fates[a] = dict(
            size=size, survive=purity >= 0.5, split=sum(v >= 0.2 for v in m.values()) >= 2,
            vanish=purity < 0.2, purity=purity, leak=leak,
            leak_noise=row.get(-1, 0.0) / size,
            leak_undescribed=row.get(-2, 0.0) / size if kind == "match" else 0.0,
            leak_unmatched=(size - sum(row.values())) / size if kind == "match" else 0.0,
            h_cond=-sum(xlogx(v) for v in t.values()) if to_clusters > 0 else None,
            h_aug=-sum(xlogx(v) for v in m.values()) - xlogx(leak))
    return fates, flows, dflows, s, s2


def oracle_evolution(w, cs, kind, space, method, l):
    fates, flows, dflows, s, s2 = oracle_fates(w, cs, kind, space, method, l)
    f = list(fates.values())
    merge = [sum(flows.get((a, b), 0) / s[a] >= 0.2 for a in s) >= 2 for b in s2]
    birth = [max((dflows.get((a, b), 0) / s2[b] for a in s), default=0) < 0.2 for b in s2]
    # MI_cond over the clusters-only joint
    keys = [(a, b) for (a, b), n in flows.items() if b >= 0 and n > 0]
    total = sum(flows[k] for k in keys)
    pa = defaultdict(float)
    pb = defaultdict(float)
    for a, b in keys:
        pa[a] += flows[(a, b)] / total
        pb[b] += flows[(a, b)] / total
    mi_cond = sum(flows[(a, b)] / total * math.log(flows[(a, b)] / total / (pa[a] * pb[b])) for a, b in keys) \
        if keys else None
    # MI_aug: joint over [clusters | leak], weights s_a
    S = sum(s.values())
    q = {}
    for a in s:
        for b in s2:
            q[(a, b)] = s[a] * (flows.get((a, b), 0) / s[a]) / S
        q[(a, "leak")] = s[a] * fates[a]["leak"] / S
    qa = {a: s[a] / S for a in s}
    qb = defaultdict(float)
    for (a, b), v in q.items():
        qb[b] += v
    mi_aug = sum(v * math.log(v / (qa[a] * qb[b])) for (a, b), v in q.items() if v > 0)
    hc = [x["h_cond"] for x in f if x["h_cond"] is not None]
    return dict(
        n_src_clusters=len(s), n_dst_clusters=len(s2), mean_src_cluster_size=np.mean(list(s.values())),
        survive_rate=np.mean([x["survive"] for x in f]), split_rate=np.mean([x["split"] for x in f]),
        vanish_rate=np.mean([x["vanish"] for x in f]), merge_rate=np.mean(merge), birth_rate=np.mean(birth),
        mean_leak=np.mean([x["leak"] for x in f]), h_cond_mean=np.mean(hc) if hc else None,
        h_aug_mean=np.mean([x["h_aug"] for x in f]), mi_cond=mi_cond, mi_aug=mi_aug)


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(b, (bool, np.bool_)):
        return bool(a) == bool(b)
    return abs(float(a) - float(b)) <= TOL * max(1.0, abs(float(b)))


# --------------------------------------------------------------------------- transitions
def test_cluster_transitions_fates_and_evolution(built):
    home, w = built
    n_pairs = 0
    for cs, link, kind, space, method in links(w):
        for l in layer_pairs(w, cs, kind, space, method):
            n_pairs += 1
            fates, flows, dflows, s, s2 = oracle_fates(w, cs, kind, space, method, l)
            key = [w.release, cs, link, l]
            got = mart(home, "select * from fct_cluster_transitions where release = ? and cluster_space = ? "
                             "and link = ? and src_layer = ? order by src_cluster, dst_cluster", key)
            want = sorted((a, b) for (a, b), n in flows.items() if b >= 0 and n > 0)
            assert [(r["src_cluster"], r["dst_cluster"]) for r in got] == want, (link, cs, l)
            for r in got:
                a, b = r["src_cluster"], r["dst_cluster"]
                assert r["dst_layer"] == l + 1
                assert close(r["flow"], flows[(a, b)])
                assert close(r["share_of_src"], flows[(a, b)] / s[a])
                assert close(r["share_of_dst"], dflows[(a, b)] / s2[b])
            got = mart(home, "select * from fct_cluster_fates where release = ? and cluster_space = ? "
                             "and link = ? and src_layer = ? order by src_cluster", key)
            assert [r["src_cluster"] for r in got] == sorted(fates), (link, cs, l)
            for r in got:
                for col, v in fates[r["src_cluster"]].items():
                    assert close(r[col], v), (link, cs, l, r["src_cluster"], col, r[col], v)
            (evo,) = mart(home, "select * from fct_layer_evolution where release = ? and cluster_space = ? "
                                "and link = ? and src_layer = ?", key)
            for col, v in oracle_evolution(w, cs, kind, space, method, l).items():
                assert close(evo[col], v), (link, cs, l, col, evo[col], v)
    assert n_pairs == 10
    assert mart(home, "select count(*) as n from fct_layer_evolution")[0]["n"] == n_pairs


def test_links_are_crossed_with_cluster_spaces(built):
    home, _ = built
    got = {(r["cluster_space"], r["link"]) for r in mart(home, "select distinct cluster_space, link from fct_layer_evolution")}
    assert got == {("decoder", "match/decoder/folded"), ("decoder", "match/decoder/random"),
                   ("decoder", "match/text/cosine"), ("text", "match/decoder/folded"),
                   ("text", "match/decoder/random"), ("text", "match/text/cosine"),
                   ("decoder", "transport/decoder/emd")}


def test_null_model_next_to_each_link(built):
    home, _ = built
    rows = mart(home, "select * from fct_layer_evolution_vs_null order by cluster_space, link, src_layer")
    evo = {(r["cluster_space"], r["link"], r["src_layer"]): r for r in mart(home, "select * from fct_layer_evolution")}
    assert not any(r["link"].endswith("/random") for r in rows)
    assert len(rows) == sum(1 for k in evo if not k[1].endswith("/random"))
    for r in rows:
        space = r["link"].split("/")[1]
        assert r["null_link"] == f"match/{space}/random"
        null = evo.get((r["cluster_space"], r["null_link"], r["src_layer"]))
        for col in ("survive_rate", "split_rate", "merge_rate", "birth_rate", "mean_leak", "mi_cond", "mi_aug"):
            assert close(r[col], evo[(r["cluster_space"], r["link"], r["src_layer"])][col])
            assert close(r[f"null_{col}"], None if null is None else null[col])
    assert any(r["null_survive_rate"] is not None for r in rows)
    # one draw (random only): a null mean, but no spread, so no z and no claim either way
    for r in rows:
        assert r["n_null_draws"] == (1 if r["null_survive_rate"] is not None else 0)
        assert r["null_survive_rate_sd"] is None and r["survive_rate_z"] is None
        assert r["survive_rate_beyond_null"] is None
        assert (r["link_kind"], r["link_space"], r["link_method"]) == tuple(r["link"].split("/"))


def test_dim_links_and_null_draw_names_agree_with_python(built):
    """dbt reads the null model's names from vars; they are the ones saew/storage/names.py defines."""
    from saew.storage import names

    v = yaml.safe_load((PROJECT / "dbt_project.yml").read_text())["vars"]
    assert (v["null_method"], v["identity_method"]) == (names.NULL_METHOD, names.IDENTITY_METHOD)
    home, w = built
    rows = mart(home, "select * from dim_links order by link")
    assert [r["link"] for r in rows] == sorted(
        [names.link_name("match", s, m) for s, m in {(s, m) for s, m, _ in w.perms}]
        + ["transport/decoder/emd"])
    for r in rows:
        assert r["link"] == names.link_name(r["link_kind"], r["link_space"], r["link_method"])
        want = names.null_draw_index(r["link_method"]) if r["link_kind"] == "match" else None
        assert r["null_draw"] == want and r["is_null"] == (want is not None)


# --------------------------------------------------------------------------- lineage
def oracle_lineage(w, space: str, method: str, root_layer: int, root: int):
    chain = [(0, root_layer, root, None, 0.0, None)]
    l, f, cum = root_layer, root, 0.0
    while (space, method, l) in w.perms and w.perms[(space, method, l)][f] >= 0:
        cost, cos = w.cost(space, method, l, f), w.cosine(space, method, l, f)
        f, l, cum = w.perms[(space, method, l)][f], l + 1, cum + cost
        chain.append((len(chain), l, f, cost, cum, cos))
    return chain


def test_feature_lineage_and_persistence(built):
    home, w = built
    n = 0
    for space, method in sorted({(s, m) for s, m, _ in w.perms}):
        link = f"match/{space}/{method}"
        for layer, width in w.widths.items():
            for root in range(width):
                want = oracle_lineage(w, space, method, layer, root)
                got = mart(home, "select * from fct_feature_lineage where release = ? and link = ? and root_layer = ? "
                                 "and root_feature = ? order by depth", [w.release, link, layer, root])
                assert len(got) == len(want), (link, layer, root)
                for r, (d, l, f, cost, cum, cos) in zip(got, want):
                    assert (r["depth"], r["layer"], r["feature"]) == (d, l, f)
                    assert close(r["step_cost"], cost) and close(r["cum_cost"], cum) and close(r["step_cosine"], cos)
                    assert r["description"] == w.descriptions.get(l, {}).get(f)
                persistence = 0
                for step in want[1:]:
                    if step[5] is None or step[5] < 0.7:
                        break
                    persistence += 1
                (p,) = mart(home, "select * from fct_feature_persistence where release = ? and link = ? and layer = ? "
                                  "and feature = ?", [w.release, link, layer, root])
                assert (p["persistence"], p["chain_length"]) == (persistence, len(want) - 1), (link, layer, root)
                n += len(want)
    assert mart(home, "select count(*) as n from fct_feature_lineage")[0]["n"] == n


# --------------------------------------------------------------------------- co-activation
def _pair_stats(x: np.ndarray, n_tokens: int):
    act = x > 0
    nf = act.sum(0)
    live = np.flatnonzero(nf > 0)
    stats = {}
    for i in live:
        for j in live[live > i]:
            nab = int((act[:, i] & act[:, j]).sum())
            if nab == 0:
                stats[(i, j)] = (0, 0.0, -1.0)
                continue
            pab, pa, pb = nab / n_tokens, nf[i] / n_tokens, nf[j] / n_tokens
            npmi = 1.0 if pab == 1 else math.log(pab / (pa * pb)) / -math.log(pab)
            stats[(int(i), int(j))] = (nab, nab / (nf[i] + nf[j] - nab), npmi)
    return live, stats


def test_coactivation_pairs_and_cluster_scores(built):
    home, w = built
    for layer, x in w.activations.items():
        live, stats = _pair_stats(x, w.n_tokens)
        got = mart(home, "select * from fct_coactivation_pairs where release = ? and layer = ? "
                         "order by feature_a, feature_b", [w.release, layer])
        want = {k: v for k, v in stats.items() if v[0] > 0}
        assert [(r["feature_a"], r["feature_b"]) for r in got] == sorted(want)
        for r in got:
            nab, j, npmi = want[(r["feature_a"], r["feature_b"])]
            assert r["n_ab"] == nab and close(r["jaccard"], j) and close(r["npmi"], npmi)
        if layer == 0:
            assert any(close(r["npmi"], 1.0) and r["n_ab"] == w.n_tokens for r in got)  # p_ab = 1
        bg_j = np.mean([v[1] for v in stats.values()])
        bg_n = np.mean([v[2] for v in stats.values()])
        n_clusters = 0
        for space in ("decoder", "text"):
            labels = np.array(w.labels.get((space, layer), []))
            for c in sorted(set(labels[labels >= 0].tolist())):
                members = [int(i) for i in np.flatnonzero(labels == c) if i in set(live.tolist())]
                got = mart(home, "select * from fct_cluster_coactivation where release = ? and layer = ? "
                                 "and space = ? and cluster = ?", [w.release, layer, space, c])
                if len(members) < 4:
                    assert got == []
                    continue
                n_clusters += 1
                pairs = [stats[(a, b)] for i, a in enumerate(members) for b in members[i + 1:]]
                (r,) = got
                sj, sn = np.mean([p[1] for p in pairs]), np.mean([p[2] for p in pairs])
                assert r["n_members"] == len(members)
                assert close(r["jaccard"], sj) and close(r["npmi"], sn)
                assert close(r["jaccard_background"], bg_j) and close(r["npmi_background"], bg_n)
                assert close(r["jaccard_lift"], sj / bg_j) and close(r["npmi_delta"], sn - bg_n)
        if layer == 0:
            assert n_clusters == 2


# --------------------------------------------------------------------------- correlations
def test_feature_flow_and_activation_fates(built):
    home, w = built
    got = mart(home, "select * from fct_feature_flow order by src_feature, dst_feature")
    assert len(got) == len(w.correlations)
    for r, (i, j, ns, nd, nb, p) in zip(got, sorted(w.correlations)):
        assert (r["src_layer"], r["src_feature"], r["dst_layer"], r["dst_feature"]) == (0, i, 1, j)
        assert close(r["pearson"], p) and close(r["sufficiency"], nb / ns) and close(r["necessity"], nb / nd)
        assert close(r["jaccard"], nb / (ns + nd - nb))
    fates = {(r["layer"], r["feature"]): r for r in mart(home, "select * from fct_feature_fates_activation")}
    assert len(fates) == sum(w.widths.values())
    for f in range(w.widths[0]):
        best = max((c[5] for c in w.correlations if c[0] == f), default=None)
        pt = best is not None and best >= 0.95
        assert (fates[(0, f)]["pass_through"], fates[(0, f)]["disappearing"]) == (pt, not pt)
        assert fates[(0, f)]["appearing"] is None
    for f in range(w.widths[1]):
        best = max((c[5] for c in w.correlations if c[1] == f), default=None)
        assert fates[(1, f)]["appearing"] == (best is None or best < 0.95)
        assert fates[(1, f)]["pass_through"] is None
    assert all(fates[(2, f)]["appearing"] is None and fates[(2, f)]["pass_through"] is None for f in range(12))
    assert fates[(0, 4)]["pass_through"] is True      # 0.95 exactly passes
    assert fates[(0, 5)]["pass_through"] is False     # 0.949 does not


def test_dim_features(built):
    home, w = built
    rows = {(r["layer"], r["feature"]): r for r in mart(home, "select * from dim_features")}
    assert len(rows) == sum(w.widths.values())
    for (layer, f), r in rows.items():
        assert r["description"] == w.descriptions.get(layer, {}).get(f)
        assert r["decoder_cluster"] == w.labels[("decoder", layer)][f]
        text = w.labels.get(("text", layer))
        assert r["text_cluster"] == (None if text is None else text[f])
        assert close(r["dec_norm"], 1.0) or abs(r["dec_norm"] - 1.0) < 1e-6
        if layer not in w.activations:
            assert r["frac_active"] is None and r["is_dead"] is None and r["mean_act"] is None
            continue
        col = w.activations[layer][:, f]
        on = col[col > 0]
        assert close(r["frac_active"], len(on) / w.n_tokens)
        assert r["is_dead"] == (len(on) == 0)
        if len(on):
            assert abs(r["mean_act"] - float(on.astype(np.float64).mean())) < 1e-6
            assert abs(r["max_act"] - float(on.max())) < 1e-6
        else:
            assert r["mean_act"] is None and r["max_act"] is None
    assert rows[(0, 7)]["is_dead"] is True and rows[(1, 6)]["is_dead"] is True
    assert rows[(0, 3)]["frac_active"] == pytest.approx(
        (w.activations[0][:, 3] > 0).sum() / w.n_tokens)  # the negative value is not active


# --------------------------------------------------------------------------- docs and empty builds
def test_every_model_column_is_documented(built):
    home, _ = built
    documented: dict[str, list[str]] = {}
    for yml in (PROJECT / "models").rglob("_*__models.yml"):
        for m in yaml.safe_load(yml.read_text()).get("models", []):
            documented[m["name"]] = [c["name"] for c in m.get("columns", [])]
            assert all(c.get("description") for c in m.get("columns", [])), m["name"]
    models = sorted(p.stem for p in (PROJECT / "models").rglob("*.sql"))
    assert set(models) == set(documented)
    for name in models:
        cols = [r["column_name"] for r in mart(
            home, "select column_name from information_schema.columns where table_name = ? "
                  "order by ordinal_position", [name])]
        assert cols == documented[name], name


def test_one_staging_model_per_source():
    """Every lake table (source) has stg_lake__<table>.sql selecting exactly its columns, in order
    (renamed at most: `space as cluster_space`, the renames done once here), and a documented
    entry in _staging__models.yml under the output names (no build needed: it reads the files)."""
    import re

    from saew.storage.schemas import TABLES

    docs = {m["name"]: [c["name"] for c in m["columns"]] for m in
            yaml.safe_load((PROJECT / "models/staging/_staging__models.yml").read_text())["models"]}
    for name, t in TABLES.items():
        sql = (PROJECT / "models/staging" / f"stg_lake__{name}.sql").read_text()
        items = [c.strip() for c in re.search(r"select(.*?)from", sql, re.S).group(1).split(",")]
        cols = [re.split(r"\s+as\s+", c)[0] for c in items]
        out = [re.split(r"\s+as\s+", c)[-1] for c in items]
        assert cols == [f.name for f in t.schema], name
        assert f"source('lake', '{name}')" in sql
        assert docs[f"stg_lake__{name}"] == out, name


def test_empty_warehouse_builds(saew, home):
    """Every catalog view is a typed zero-row view: all models and data tests build on it.
    (The small warehouse above is itself partial: no tokens, embeddings, reconstruction...)"""
    code, out, err = saew("build", "--quiet", "--select", "resource_type:model test_type:data")
    assert code == 0, out + err
    for name in ("fct_cluster_transitions", "fct_cluster_fates", "fct_layer_evolution", "fct_feature_lineage",
                 "fct_feature_persistence", "fct_coactivation_pairs", "fct_cluster_coactivation",
                 "fct_feature_flow", "fct_feature_fates_activation", "dim_features", "fct_layer_evolution_vs_null",
                 "fct_layer_evolution_null", "dim_links"):
        assert mart(home, f"select count(*) as n from {name}")[0]["n"] == 0
    report = sorted(p.stem for p in (PROJECT / "models" / "report").glob("rpt_*.sql"))
    assert len(report) >= 17
    for name in report:
        n = mart(home, f"select count(*) as n from {name}")[0]["n"]
        assert n == (1 if name == "rpt_thresholds" else 0), name


def test_build_vars_reach_rpt_thresholds(saew, home):
    """`saew build --vars` changes the thresholds, and rpt_thresholds shows what the build used."""
    code, out, err = saew("build", "--quiet", "--select", "rpt_thresholds",
                          "--vars", "{survive_threshold: 0.6, split_threshold: 0.25, sankey_top: 5}")
    assert code == 0, out + err
    (row,) = mart(home, "select * from rpt_thresholds")
    assert (row["survive_threshold"], row["split_threshold"], row["merge_threshold"]) == (0.6, 0.25, 0.2)
    assert (row["sankey_top"], row["null_band_z"], row["null_method"]) == (5, 2.0, "random")


def test_bad_vars_exit_2(saew, home):
    code, out, err = saew("build", "--quiet", "--vars", "{survive_threshold: [", "--select", "int_features")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("saew: error:")
