"""Training curves of the release's SAEs (rpt_training_curves) and the table of its SAEs
(rpt_release)."""
from __future__ import annotations

from saew.report.items import Item, Table
from saew.report.read import Reader, Setup, missing, n_rows


def plot_training(r: Reader, s: Setup) -> list[Item]:
    from saew.report import plots

    sec, title = "Training", "SAE training curves"
    cap = ("Training of each layer's SAE (one line per layer, light = deep), from training_log: the "
           "fraction of variance unexplained of the reconstruction, the mean number of active "
           "features per token (L0), and the share of dead features, against tokens seen. Curves "
           "that flatten have converged.")
    miss = missing(r, "rpt_training_curves", "saew train")
    if miss:
        return [Item(sec, title, cap, note=miss)]
    c = r.cols("SELECT layer, x, fvu, l0, dead_frac FROM rpt_training_curves WHERE release = $r "
               "ORDER BY layer, step", {"r": s.release})
    if n_rows(c) == 0:
        return [Item(sec, title, cap, note="no data: run saew train (SAEs ingested from elsewhere have no curves)")]
    name = "training.png"
    plots.training_figure(c, "SAE training curves", s.out / name)
    return [Item(sec, title, cap, file=name)]


def table_release(r: Reader, s: Setup) -> Table:
    title, cap = "SAEs of the release", "One row per ingested SAE (rpt_release)."
    miss = missing(r, "rpt_release", "rpt_release")
    if miss:
        return Table("Release", title, cap, note=miss)
    cols, rows = r.rows("SELECT layer, model, hook, architecture, d_in, d_sae, k, source_format FROM rpt_release "
                        "WHERE release = $r ORDER BY layer", {"r": s.release})
    return Table("Release", title, cap, cols, rows)
