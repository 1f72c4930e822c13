"""Every ``saew`` command word, run once on a small non-empty warehouse: exit 0, no traceback.

The ``saew status`` crash on every non-empty warehouse (issue 15, item 9) went unnoticed
because no test ran that command on data; this one runs each command of the command table
(``saew.cli.commands.STEPS``, the ingests included) once, in pipeline order, on a warehouse
that the commands themselves fill: a tiny TopK SAE per layer trained on a few hundred minilm
tokens (``train --harvest``), then every computing step, the six ingests into a second
release, ``build``, and the read commands. ``demo`` (the whole default pipeline, minutes) is
the one word left out; it only runs these steps.
"""
from __future__ import annotations

import numpy as np

from saew.cli.commands import STEPS
from tests.factories import make_sae
from tests.formats import neuronpedia_row, write_jsonl, write_labels, write_saelens, write_sparse, write_table

R = "t"        # trained here, on minilm
X = "x"        # filled by the ingest commands
TOKENS = 200


def _x_inputs(root) -> dict[tuple[str, ...], list[str]]:
    """The files of the ingest commands (release X: two SAEs of 8 features, d_in 4) and their
    command lines."""
    saes = {L: make_sae(d_in=4, d_sae=8, seed=L) for L in (0, 1)}
    for L, p in saes.items():
        write_saelens(root / f"sae{L}", p, hook=f"blocks.{L}.hook_resid_post")
    descs = write_jsonl(root / "descriptions.jsonl",
                        [neuronpedia_row(0, i, f"feature {i} of layer 0") for i in range(8)])
    labels = write_labels(root / "labels.npy", np.array([0, 0, 0, 1, 1, 1, -1, 2]))
    perm = write_labels(root / "P_00_01.npy", np.array([1, 0, 2, 3, 5, 4, 7, 6]))
    plan = write_table(root / "plan.csv", {"src_cluster": [0, 1, -1], "dst_cluster": [0, 1, -1],
                                           "mass": [3.0, 3.0, 2.0]})
    acts = np.random.default_rng(0).uniform(0.1, 1.0, (12, 8)) * \
        (np.random.default_rng(1).random((12, 8)) < 0.4)
    codes = write_sparse(root / "acts.npz", acts.astype(np.float32))
    x = ["--release", X]
    return {
        ("ingest", "sae"): ["ingest", "sae", str(root / "sae0"), *x],
        ("ingest", "descriptions"): ["ingest", "descriptions", str(descs), *x, "--layer", "0"],
        ("ingest", "clusters"): ["ingest", "clusters", str(labels), *x, "--layer", "0", "--space", "decoder"],
        ("ingest", "matches"): ["ingest", "matches", str(perm), *x, "--src-layer", "0", "--space",
                                "decoder", "--method", "folded"],
        ("ingest", "transport"): ["ingest", "transport", str(plan), *x, "--src-layer", "0",
                                  "--space", "decoder", "--solver", "emd"],
        ("ingest", "activations"): ["ingest", "activations", str(codes), *x, "--layer", "0"],
    }


def _pipeline(tmp_path) -> list[list[str]]:
    """Every command line, in an order where each finds what it needs."""
    r = ["--release", R]
    x = _x_inputs(tmp_path)
    second_sae = ["ingest", "sae", str(tmp_path / "sae1"), "--release", X]
    return [
        ["train", *r, "--model", "minilm", "--layers", "0-1", "--tokens", str(TOKENS), "--d-sae", "64",
         "--k", "8", "--steps", "6", "--batch-size", "128", "--workers", "1", "--harvest",
         "--hooks", "resid_post,mlp_out,attn_out"],
        ["harvest", *r, "--model", "minilm", "--corpus", "builtin", "--tokens", str(TOKENS)],
        ["describe", *r],
        ["embed", *r],
        ["match", *r, "--space", "decoder"],
        ["cluster", *r, "--space", "decoder", "--workers", "1"],
        ["transport", *r, "--space", "decoder"],
        ["coactivation", *r],
        ["correlate", *r],
        ["communities", *r],
        ["evaluate", *r],
        ["flow", *r],
        ["verify", *r, "--sample", "2", "--tokens-per-link", "1"],
        x[("ingest", "sae")], second_sae,
        *[x[w] for w in x if w != ("ingest", "sae")],
        ["build", "--quiet"],
        ["query", "SELECT release, count(*) AS n FROM saes GROUP BY 1 ORDER BY 1"],
        ["export", "--out", str(tmp_path / "marts")],
        ["plot", *r],
        ["report", *r],
        ["browse", *r],
        ["status"],
    ]


def _words(argv: list[str]) -> tuple[str, ...]:
    two = tuple(argv[:2])
    return two if any(c.words == two for c in STEPS) else (argv[0],)


def test_the_pipeline_names_every_command(tmp_path):
    assert {_words(a) for a in _pipeline(tmp_path)} == {c.words for c in STEPS}


def test_every_command_runs_once_on_a_non_empty_warehouse(saew, home, tmp_path):
    ran = []
    for argv in _pipeline(tmp_path):
        code, out, err = saew(*argv)
        assert code == 0 and "Traceback" not in out + err, (argv, out, err)
        ran.append(_words(argv))
    assert set(ran) == {c.words for c in STEPS}
    code, out, err = saew("status")
    assert f"{R} " in out and f"{X} " in out, out
