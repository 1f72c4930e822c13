"""``saew demo``: the whole pipeline on the embedded default (a real model, a real corpus).

train (+ harvest, on the same model pass) -> describe -> embed -> match -> cluster -> transport -> coactivation ->
correlate -> communities -> evaluate -> build (dbt) -> report -> browse. Each step is an ordinary
``saew`` command with its own lock, transaction and ``runs`` row; a step that is not
available yet is reported and skipped, the rest go on.
"""
from __future__ import annotations

import sys
import time

from saew.cli.commands import build_parser, execute
from saew.compute.options import OPTION_NAMES, add_device_argument, add_executor_arguments
from saew.errors import BadInput
from saew.storage.names import NULL_METHOD, link_name

DEFAULT_TOKENS = {"smollm2": 32768, "minilm": 20000}
# per-model training settings of the demo: SmolLM2's deep layers (26-28) need the extra steps
# of 512-token batches to stay under fvu 0.2 on 32,768 tokens (0.190 vs 0.203 at layer 28)
DEMO_TRAIN = {"smollm2": ["--batch-size", "512"]}
NULL_DRAWS = 10             # random matchings per space: the null band is their mean +- 2 sd
STABILITY_SEEDS = 1         # extra cluster runs per layer behind stability_ari (each one costs a whole clustering)
# `saew demo --flow`: module SAEs (resid_post, mlp_out, attn_out in one model pass), `saew flow`, and
# `saew verify` where that command exists, on these layers unless --layers is given (three SAEs
# per layer, and verify runs the model for every link: all 30 SmolLM2 layers do not fit the
# 25-minute budget on 2 cores). verify checks FLOW_VERIFY_SAMPLE links per family and layer
# pair of the families the README compares (about 0.3-0.7 s per link on SmolLM2 on this machine)
FLOW_HOOKS = "resid_post,mlp_out,attn_out"
FLOW_LAYERS = {"smollm2": "0-11", "minilm": "all"}
FLOW_VERIFY_LINKS = ("flow", link_name("match", "decoder", "folded"), link_name("match", "decoder", NULL_METHOD))
FLOW_VERIFY_SAMPLE = 10
# options a step may not take yet (added by other work): dropped with a note rather than failing
OPTIONAL = {"--stability"}
# the findings the summary shows: (cluster space, link) -- each space's clusters through its match
FINDINGS = (("decoder", link_name("match", "decoder", "folded")),
            ("text", link_name("match", "text", "cosine")))


def add_arguments(p) -> None:
    p.add_argument("--model", default="smollm2",
                   help="smollm2 (SmolLM2-135M, 30 layers; default) or minilm (all-MiniLM-L6-v2, 6 layers, quicker)")
    p.add_argument("--tokens", type=int, default=None,
                   help="tokens of the builtin corpus to train on and harvest (default 32768 for smollm2, 20000 for minilm)")
    p.add_argument("--release", default=None, help="release name (default demo-<model>)")
    p.add_argument("--corpus", default="builtin", help="builtin (the Python standard library) or a local file")
    p.add_argument("--layers", default=None,
                   help="layers to train SAEs on: A-B, L or all (default all; with --flow "
                        + ", ".join(f"{v} for {k}" for k, v in FLOW_LAYERS.items()) + ")")
    p.add_argument("--flow", action="store_true",
                   help="also train MLP-out and attention-out SAEs in the same model pass (releases "
                        "R.mlp_out, R.attn_out), run saew flow (each feature's origin) and one saew "
                        f"verify (causal checks of {', '.join(FLOW_VERIFY_LINKS)}: "
                        f"{FLOW_VERIFY_SAMPLE} links per family and layer pair); on "
                        + f"layers {FLOW_LAYERS['smollm2']} of smollm2 (all 30 do not fit the 25-minute "
                        "budget on 2 cores; every layer of minilm) unless --layers says otherwise")
    p.add_argument("--d-sae", type=int, default=None, help="SAE width (default: the trainer's)")
    p.add_argument("--arch", default="topk", choices=["topk", "relu", "jumprelu"], help="SAE architecture")
    add_executor_arguments(p, "units of each step")
    add_device_argument(p)


def _steps(args, release: str, tokens: int) -> list[tuple[str, list[str]]]:
    r = ["--release", release]
    flow = getattr(args, "flow", False)
    layers = args.layers or (FLOW_LAYERS.get(args.model, "all") if flow else "all")
    train = ["train", *r, "--model", args.model, "--corpus", args.corpus, "--layers", layers,
             "--arch", args.arch, "--tokens", str(tokens), "--harvest", *DEMO_TRAIN.get(args.model, [])]
    if args.d_sae:
        train += ["--d-sae", str(args.d_sae)]
    if flow:
        train += ["--hooks", FLOW_HOOKS]
    null, stab = ["--draws", str(NULL_DRAWS)], ["--stability", str(STABILITY_SEEDS)]
    return [
        ("train SAEs and harvest their activations (one model pass)", train),
        ("describe features", ["describe", *r]),
        ("embed descriptions", ["embed", *r, "--dtype", "auto"]),
        ("match (decoder, folded)", ["match", *r, "--space", "decoder", "--method", "folded"]),
        ("match (decoder, random null)", ["match", *r, "--space", "decoder", "--method", NULL_METHOD, *null]),
        ("match (text)", ["match", *r, "--space", "text"]),
        ("match (text, random null)", ["match", *r, "--space", "text", "--method", NULL_METHOD, *null]),
        ("cluster (decoder)", ["cluster", *r, "--space", "decoder", *stab]),
        ("cluster (text)", ["cluster", *r, "--space", "text", *stab]),
        ("transport (decoder)", ["transport", *r, "--space", "decoder"]),
        ("transport (text)", ["transport", *r, "--space", "text"]),
        ("co-activation", ["coactivation", *r]),
        ("correlate", ["correlate", *r]),
        ("communities", ["communities", *r]),
        ("evaluate", ["evaluate", *r]),
        *(flow_steps(r) if flow else []),
        ("dbt build", ["build", "--quiet"]),
        ("report", ["report", *r]),
        ("feature browser", ["browse", *r]),
    ]


def flow_steps(r: list[str]) -> list[tuple[str, list[str]]]:
    """``--flow``'s steps after evaluate: saew flow, then saew verify if the command table has it."""
    from saew.cli.commands import STEPS

    steps = [("feature flow (origins by decoder cosine)", ["flow", *r])]
    if any(c.words == ("verify",) for c in STEPS):   # one call: the model loads once
        links = ",".join(FLOW_VERIFY_LINKS)
        steps.append((f"verify {links} (causal checks, {FLOW_VERIFY_SAMPLE} links per family and "
                      f"layer pair)", ["verify", *r, "--link", links, "--sample", str(FLOW_VERIFY_SAMPLE)]))
    return steps


def run(args, ctx) -> str:
    release = args.release or f"demo-{args.model}"
    tokens = args.tokens or DEFAULT_TOKENS.get(args.model, 20000)
    parser = build_parser()
    common = ["--home", str(ctx.home), "--seed", str(ctx.seed)]
    t_all = time.time()
    skipped: list[str] = []
    for label, argv in _steps(args, release, tokens):
        t0 = time.time()
        print(f"[demo] {label} ...", file=sys.stderr, flush=True)
        sub = _parse(parser, argv + common + _where(args))
        try:
            out = execute(sub._words, sub)
        except BadInput as e:
            if "not implemented yet" in str(e):
                skipped.append(label)
                print(f"[demo]   skipped: {e}", file=sys.stderr)
                continue
            raise
        if out and label in {"dbt build"}:
            print(f"[demo]   {out.splitlines()[-1]}", file=sys.stderr)
        print(f"[demo]   done in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    return summary(ctx, release, time.time() - t_all, skipped)


def _parse(parser, argv: list[str]):
    """Parse one step's words; an OPTIONAL option the step does not take (yet) is dropped with
    a note, anything else unknown is an error."""
    sub, extra = parser.parse_known_args(argv)
    if not extra:
        return sub
    quiet = [a for a in extra if a in OPTION_NAMES]   # where the units run: only steps with units
    if quiet:
        keep = list(argv)
        for a in quiet:
            k = keep.index(a)
            del keep[k:k + 2]
        return _parse(parser, keep)
    drop = [a for a in extra if a in OPTIONAL]
    if len(drop) != len([a for a in extra if a.startswith("--")]):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    keep = list(argv)
    for a in drop:
        k = keep.index(a)
        del keep[k:k + 2]
        print(f"[demo]   (saew {argv[0]} takes no {a} here yet: running without it)", file=sys.stderr)
    return parser.parse_args(keep)


def summary(ctx, release: str, seconds: float, skipped: list[str]) -> str:
    from saew.storage import catalog

    con = catalog.connect(ctx.lake, read_only=True)
    lines = [f"saew demo: release {release!r} done in {seconds / 60:.1f} min"]
    try:
        try:
            n = con.execute("SELECT count(*), sum(d_sae), min(d_sae) FROM saes WHERE release = ?",
                            [release]).fetchall()[0]
            lines.append(f"  layers: {n[0]}, features: {n[1]} ({n[2]} per layer)")
        except Exception as e:  # no catalog views
            lines.append(f"  (no SAE table: {str(e).splitlines()[0]})")
        lines += findings(con, release)
        lines += origin_lines(con, release)
    finally:
        con.close()
    if skipped:
        lines.append(f"  skipped (not available yet): {', '.join(skipped)}")
    report = ctx.home / "reports" / release / "index.html"
    lines.append(f"  warehouse: {ctx.home / 'saew.duckdb'}  (saew query --home {ctx.home} \"...\")")
    lines.append(f"  report:    {report}" + ("" if report.exists() else " (not written)"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- findings
_RATES = ("survive_rate", "merge_rate")


def findings(con, release: str) -> list[str]:
    """The demo's result, from the dbt model ``rpt_layer_findings``: per space, each layer
    pair's survive and merge rates beside their null band [null_<rate>_lo, null_<rate>_hi]
    (mean +- null_band_z sd over the random matchings), ``*`` where the mart marks the rate
    beyond the null, "no structure" where a layer's clusters beat no null, and one sentence on
    how many layer pairs show survival above the band.  One line when the mart is missing."""
    cols = ["cluster_space", "link", "src_layer", "dst_layer", "n_src_clusters", "n_null_draws",
            "verdict", "src_has_structure", "dst_has_structure"]
    for r in _RATES:
        cols += [r, f"null_{r}", f"null_{r}_lo", f"null_{r}_hi", f"{r}_beyond_null"]
    where = " OR ".join("(cluster_space = ? AND link = ?)" for _ in FINDINGS)
    try:
        rel = con.execute(f"SELECT {', '.join(cols)} FROM rpt_layer_findings WHERE release = ? "
                          f"AND ({where}) ORDER BY cluster_space, src_layer",
                          [release, *[x for f in FINDINGS for x in f]])
        rows = [dict(zip(cols, r)) for r in rel.fetchall()]
    except Exception as e:  # marts not built, or built before rpt_layer_findings existed
        return [f"  (no findings: rpt_layer_findings is not readable; run saew build: "
                f"{str(e).splitlines()[0]})"]
    try:
        z = float(con.execute("SELECT null_band_z FROM rpt_thresholds").fetchone()[0])
    except Exception:  # an older build: the default of dbt_project.yml
        z = 2.0
    out = []
    for space, link in FINDINGS:
        out += space_findings(space, link, [r for r in rows if r["cluster_space"] == space
                                            and r["link"] == link], z)
    return out


def space_findings(space: str, link: str, rows: list[dict], z: float = 2.0) -> list[str]:
    """The table and the sentence of one cluster space (rows: its layer pairs, in order)."""
    if not rows:
        return [f"  {space} clusters, link {link}:",
                f"    no layer pairs (run saew match and saew cluster for the {space} space, then saew build)"]
    draws = max(r["n_null_draws"] or 0 for r in rows)
    lines = [f"  {space} clusters, link {link} (null: {draws} random matching{'s' * (draws != 1)}; "
             f"band = mean +- {z:g} sd; * beyond it):",
             f"    {'layers':>9}  {'clusters':>8}  {'survive [null band]':<27}  merge [null band]"]
    for r in rows:
        pair = f"{r['src_layer']} -> {r['dst_layer']}"
        if r["verdict"] == "no structure":
            lines.append(f"    {pair:>9}  {_num(r['n_src_clusters']):>8}  no structure")
            continue
        cells = [_rate_cell(r, rate) for rate in _RATES]
        lines.append(f"    {pair:>9}  {_num(r['n_src_clusters']):>8}  {cells[0]:<27}  {cells[1]}".rstrip())
    gone = sorted({r["src_layer"] for r in rows if r["src_has_structure"] is False}
                  | {r["dst_layer"] for r in rows if r["dst_has_structure"] is False})
    if gone:
        lines.append(f"    no structure at layer{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))}")
    lines.append("  " + verdict_sentence(space, link, rows))
    return lines


def _num(x) -> str:
    return "-" if x is None else str(x)


def _rate_cell(r: dict, rate: str) -> str:
    """``0.420 [0.300, 0.400] *``: the rate, its null band, the mark beyond the null."""
    v, mean, lo, hi = r[rate], r[f"null_{rate}"], r[f"null_{rate}_lo"], r[f"null_{rate}_hi"]
    if v is None:
        return "-"
    if mean is None:
        return f"{v:.3f} (no null)"
    if lo is None or hi is None:
        return f"{v:.3f} (null {mean:.3f}, no band)"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" + (" *" if r[f"{rate}_beyond_null"] else "")


def verdict_sentence(space: str, link: str, rows: list[dict]) -> str:
    """How many layer pairs show survival above the null band; said plainly when that is not
    most of them.  Above = the mart's survive_rate_beyond_null and the rate over the null mean."""
    label = f"{link.split('/')[-1]}-match survival"
    n = len(rows)
    counts = {"above": 0, "within": 0, "below": 0, "no structure": 0, "no null": 0, "no band": 0}
    for r in rows:
        if r["verdict"] == "no structure":
            counts["no structure"] += 1
        elif r["verdict"] == "no null" or r["null_survive_rate"] is None or r["survive_rate"] is None:
            counts["no null"] += 1
        elif r["null_survive_rate_lo"] is None:
            counts["no band"] += 1
        elif r["survive_rate_beyond_null"]:
            counts["above" if r["survive_rate"] > r["null_survive_rate"] else "below"] += 1
        else:
            counts["within"] += 1
    where = {"within": "within it", "below": "below it", "no structure": "no structure",
             "no null": "no null", "no band": "one null draw, no band"}
    if counts["above"] * 2 > n:
        rest = [f"{where[k]} at {c}" for k, c in counts.items() if k != "above" and c]
        return (f"{space} clusters: {label} is above the null band at {counts['above']} of {n} layer "
                f"pairs" + (f" ({', '.join(rest)})." if rest else "."))
    if counts["no null"] + counts["no band"] == n:
        return (f"{space} clusters: no null band to compare with (it takes at least two null "
                f"draws); run saew match --space {space} --method {NULL_METHOD} and saew build.")
    others = [k for k in counts if k != "above"]
    if all(counts["within"] >= counts[k] for k in others):
        head = f"is within the null band at {counts['within']} of {n} layer pairs"
        rest = [f"above it at {counts['above']}"] + [f"{where[k]} at {counts[k]}" for k in others
                                                    if k != "within" and counts[k]]
    else:
        head = f"is above the null band at only {counts['above']} of {n} layer pairs"
        rest = [f"{where[k]} at {counts[k]}" for k in others if counts[k]]
    return (f"{space} clusters: {label} {head} ({', '.join(rest)}): most layer pairs show nothing "
            f"beyond a random matching.")


def origin_lines(con, release: str) -> list[str]:
    """Where the features of each residual layer come from (``fct_origin_by_layer``: the share
    of each origin of ``dim_flow_origins``); nothing when the release has no flow links."""
    try:
        rows = con.execute(
            "SELECT layer, origin, share FROM fct_origin_by_layer JOIN dim_flow_origins USING (origin) "
            "WHERE release = ? ORDER BY layer, tie_order", [release]).fetchall()
        mean_best = con.execute("SELECT avg(best_cosine) FROM fct_feature_origin WHERE release = ?",
                                [release]).fetchone()[0]
    except Exception:  # noqa: BLE001 - marts not built, or built before the flow marts existed
        return []
    if not rows:
        return []
    origins = list(dict.fromkeys(o for _, o, _ in rows))
    share: dict[int, dict[str, float]] = {}
    for layer, origin, s in rows:
        share.setdefault(int(layer), {})[origin] = float(s)
    out = [f"  feature origins, share per layer (fct_origin_by_layer; mean best decoder cosine "
           f"{mean_best:.3f}):", f"    {'layer':>5}  " + "  ".join(f"{o:>7}" for o in origins)]
    out += [f"    {layer:>5}  " + "  ".join(f"{v.get(o, 0.0):7.3f}" for o in origins)
            for layer, v in sorted(share.items())]
    return out


def _where(args) -> list[str]:
    """The demo's ``--executor``, ``--ray-address``, ``--workers`` and ``--device``, for every
    step (``_parse`` drops them from the steps without units); nothing when all are defaults."""
    out = [] if getattr(args, "executor", "local") == "local" else ["--executor", args.executor]
    for opt, v in (("--ray-address", getattr(args, "ray_address", None)),
                   ("--workers", getattr(args, "workers", None)),
                   ("--device", None if getattr(args, "device", "auto") == "auto" else args.device)):
        if v is not None:
            out += [opt, str(v)]
    return out
