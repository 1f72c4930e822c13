"""``saew verify``: are data-free links causal? Switch the source feature off, watch the target.

For a seeded sample of links (``compute.causal.links``: match links ``match/<space>/<method>``
from ``matches``, flow links ``flow/<module>`` from ``flow_links``) the model runs on token
windows where the source feature is active, clean and with the source feature's contribution
removed at its hook (the SAE's reconstruction error kept: ``compute.causal.intervene``), and the
destination SAE reads the target feature, and a control feature active on the same token, at
the window's last token (``compute.causal.measure``). One ``interventions`` row per link
(contract section 6):

  n_tokens          windows measured
  act_before/after  mean activation of the target, clean / source switched off
  control_before/after  the same for the controls (random active features, not targets)

dbt scores them (``fct_link_interventions``: drop = (act_before - act_after) / act_before,
confirmed when drop >= var ``causal_confirm_drop``) and summarises per link and layer pair
(``fct_link_causal``). Partitioned by (release, dst_layer); a run replaces the rows of the links
it verified at each destination layer it visited and keeps the others.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from saew.compute.causal.links import resolve, sample_jobs, window_texts
from saew.compute.causal.measure import MeasureConfig, Scores, measure, tokenize_windows
from saew.compute.units import Units, layer_unit
from saew.errors import BadInput
from saew.progress import progress
from saew.storage.saes import load_sae, require_release
from saew.storage.schemas import spec

DEFAULT_SAMPLE = 200


@dataclass(frozen=True)
class VerifyConfig:
    release: str
    link: str = "all"
    sample: int = DEFAULT_SAMPLE
    model: str | None = None
    layers: str | None = None
    measure: MeasureConfig = MeasureConfig()

    def check(self) -> "VerifyConfig":
        for name, v, lo in (("--sample", self.sample, 1), ("--tokens-per-link", self.measure.per_link, 1),
                            ("--window", self.measure.window, 1), ("--batch-size", self.measure.batch_size, 1)):
            if v < lo:
                raise BadInput(f"{name} {v}: must be at least {lo}")
        return self


def add_arguments(p) -> None:
    p.add_argument("--release", required=True, help="release whose links to verify (its residual SAEs)")
    p.add_argument("--link", default="all",
                   help="match/<space>/<method>, flow (its three modules), flow/resid|mlp_out|attn_out, "
                        "or all (default: every match link and flow module present); several joined by "
                        "commas, e.g. match/decoder/folded,match/decoder/random,flow")
    p.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                   help=f"links drawn per link family and layer pair (default {DEFAULT_SAMPLE}); the "
                        f"match links of a pair share their sample of source features")
    p.add_argument("--tokens-per-link", type=int, default=MeasureConfig.per_link,
                   help=f"windows per source feature: its strongest activations (default {MeasureConfig.per_link})")
    p.add_argument("--window", type=int, default=MeasureConfig.window,
                   help=f"tokens per window, ending at the active token (default {MeasureConfig.window})")
    p.add_argument("--batch-size", type=int, default=MeasureConfig.batch_size,
                   help=f"windows per forward pass (default {MeasureConfig.batch_size})")
    p.add_argument("--layers", default=None,
                   help="only the layer pairs whose destination layer is in L, A-B or a list of them (1,5,10-12; default all)")
    p.add_argument("--model", default=None, help="the model to run (default: the one the release's SAEs name)")


def run(args, ctx) -> str:
    cfg = VerifyConfig(args.release, args.link, args.sample, args.model, args.layers,
                       MeasureConfig(args.tokens_per_link, args.window, args.batch_size)).check()
    return verify(ctx, cfg)


def _layer_range(spec_: str | None) -> set[int] | None:
    """``--layers``: L, A-B, or several of them joined by commas (``1,5,10-12``)."""
    if spec_ is None:
        return None
    out: set[int] = set()
    for part in spec_.split(","):
        part = part.strip()
        try:
            lo, hi = (int(x) for x in part.split("-", 1)) if "-" in part[1:] else (int(part),) * 2
        except ValueError:
            raise BadInput(f"--layers {spec_!r}: expected L, A-B or a comma-separated list of them") from None
        if lo < 0 or hi < lo:
            raise BadInput(f"--layers {spec_!r}: expected 0 <= A <= B")
        out |= set(range(lo, hi + 1))
    return out


def _model_name(lake, release: str, given: str | None) -> str:
    if given:
        return given
    names = [m for m in lake.query("SELECT DISTINCT model FROM saes WHERE release = ? ORDER BY 1",
                                   [release]).column("model").to_pylist() if m]
    if len(names) != 1:
        raise BadInput(f"--release {release!r}: its SAEs name {'no model' if not names else 'several models'}; "
                       f"give --model")
    return names[0]


def verify(ctx, cfg: VerifyConfig, model=None) -> str:
    """Verify the sampled links of ``cfg`` with ``cfg.model`` (or an already loaded model)."""
    from saew.compute.causal.intervene import parse_point
    from saew.compute.lm.load import load_model
    from saew.sae.encode import TorchSAE

    lake = ctx.lake
    require_release(lake, cfg.release)
    links = list(dict.fromkeys(l for part in cfg.link.split(",") for l in resolve(lake, cfg.release, part.strip())))
    jobs = sample_jobs(lake, cfg.release, links, cfg.sample, ctx.seed, _layer_range(cfg.layers))
    if not jobs:
        raise BadInput(f"--layers {cfg.layers}: no layer pair of {', '.join(links)} ends there" if cfg.layers
                       else f"--release {cfg.release!r}: no layer pair holds {', '.join(links)}")
    model = model if model is not None else load_model(_model_name(lake, cfg.release, cfg.model))
    saes: dict[tuple[str, int], tuple] = {}

    def sae(release: str, layer: int):
        if (release, layer) not in saes:
            p = load_sae(lake, release, layer)
            if p.d_in != model.spec.d_model:
                raise BadInput(f"release {release!r} layer {layer}: SAE d_in {p.d_in} != d_model "
                               f"{model.spec.d_model} of model {model.spec.name!r}")
            saes[(release, layer)] = (TorchSAE.from_params(p), parse_point(p.hook, layer, f"release {release!r} layer {layer}"))
        return saes[(release, layer)]

    units = Units(ctx, [layer_unit(d) for d in dict.fromkeys(j.dst_layer for j in jobs)])
    jobs = [j for j in jobs if layer_unit(j.dst_layer) in units.todo]
    prepared = []
    for job in jobs:
        row_probe, texts = window_texts(lake, job, cfg.measure.per_link, cfg.measure.window)
        prepared.append((job, row_probe, tokenize_windows(model, texts, cfg.measure.window)))
    bar = progress(total=sum(len(p[2]) for p in prepared), desc="verify", unit="win")
    out: dict[int, list[pa.Table]] = {}
    for i, (job, row_probe, seqs) in enumerate(prepared):   # jobs are ordered by dst_layer
        (src_sae, src), (dst_sae, dst) = sae(job.src_release, job.src_layer), sae(cfg.release, job.dst_layer)
        scores = measure(model, job, row_probe, seqs, src, src_sae, dst, dst_sae, cfg.measure, ctx.seed, bar)
        out.setdefault(job.dst_layer, []).append(_rows(cfg.release, job, scores))
        if i + 1 == len(prepared) or prepared[i + 1][0].dst_layer != job.dst_layer:
            _write(lake, cfg.release, job.dst_layer, pa.concat_tables(out[job.dst_layer]), links)
            units.commit(layer_unit(job.dst_layer))   # one unit per destination layer
    bar.close()
    return _summary(cfg.release, out) + units.note()


def _rows(release: str, job, s: Scores) -> pa.Table:
    n = len(job.link)
    nan_null = lambda a: pa.array(a, pa.float64(), mask=~np.isfinite(a))  # noqa: E731
    return pa.table({
        "link": pa.array(job.link, pa.string()),
        "src_release": pa.array([job.src_release] * n, pa.string()),
        "src_layer": pa.array(np.full(n, job.src_layer, np.int32)),
        "src_feature": pa.array(job.probes[job.probe].astype(np.int32)),
        "dst_release": pa.array([release] * n, pa.string()),
        "dst_feature": pa.array(job.dst_feature.astype(np.int32)),
        "n_tokens": pa.array(s.n_tokens.astype(np.int64)),
        "act_before": nan_null(s.act_before), "act_after": nan_null(s.act_after),
        "control_before": nan_null(s.control_before), "control_after": nan_null(s.control_after),
    })


def _write(lake, release: str, dst_layer: int, new: pa.Table, links: list[str]) -> None:
    """Replace the verified links' rows of one (release, dst_layer) partition, keep the others."""
    schema = spec("interventions").data_schema
    new = new.select(schema.names).cast(schema)
    if lake.has_data("interventions"):
        old = lake.query("SELECT * FROM interventions WHERE release = ? AND dst_layer = ? AND NOT "
                         "list_contains(?, link)", [release, int(dst_layer), links])
        if old.num_rows:
            new = pa.concat_tables([old.select(schema.names).cast(schema), new])
    lake.write("interventions", new, release=release, dst_layer=int(dst_layer))


def _summary(release: str, out: dict[int, list[pa.Table]]) -> str:
    if not out:
        return f"verify: every layer pair of release {release!r} was done already"
    t = pa.concat_tables([x for ts in out.values() for x in ts])
    link = np.asarray(t.column("link").to_pylist(), dtype=object)
    before = t.column("act_before").to_numpy(zero_copy_only=False)
    after = t.column("act_after").to_numpy(zero_copy_only=False)
    parts = []
    for name in sorted(set(link)):
        m = (link == name) & (np.nan_to_num(before) > 0)
        drop = float(np.mean((before[m] - after[m]) / before[m])) if m.any() else float("nan")
        parts.append(f"{name}: {int((link == name).sum())} links, mean drop {drop:.2f}")
    return (f"verified {t.num_rows} links of release {release!r} over {len(out)} layer pairs "
            f"({'; '.join(parts)})")
