"""One catalogue of refusals (issue 15, item 8): every bad input exits 2 with one line.

Each row is (id, what to run, a fragment of the expected message). Every row runs ``saew``
in-process on one small warehouse (release ``r``: SAEs at layers 0 and 1, d_in 8, d_sae 16)
and asserts exit status 2, exactly one line on stderr starting ``saew: error:``, the fragment
in it, and the lake (every file under ``lake/`` and ``saes/``, by content) unchanged. The rows
cover every input path: each ingest kind and format, the numeric options of the commands,
``--home``, and ``saew query``'s read-only rule; and every case of the issue's "Accepted
although wrong", "Crashes instead of one line" and "Memory" lists.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from saew.storage.lake import Lake
from tests.factories import make_sae, put_sae, run_saew
from tests.formats import (neuronpedia_explanation_row, neuronpedia_neuron_row, neuronpedia_row,
                           write_dictionary_learning, write_evil_pt, write_gemmascope,
                           write_jsonl, write_labels, write_neuronpedia_export, write_openai,
                           write_saelens, write_sparse, write_sparsify, write_table)

R = ["--release", "r"]
BIG = 2 ** 32 + 1          # beyond int32: stored as 1 before
DEEP = "[" * 5000 + "]" * 5000


# ---------------------------------------------------------------- raw file crafting
def _st(path: Path, header: dict, data: bytes = b"") -> Path:
    """A safetensors file with exactly this header and data block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    """The bytes of an ``.npy`` header declaring ``shape`` (version 1.0)."""
    d = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(d) + 1) % 64
    d = d + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d


def _saelens(tmp: Path, name: str, p=None, **kw) -> Path:
    return write_saelens(tmp / name, p if p is not None else make_sae(8, 16), hook="blocks.0.hook_resid_post", **kw)


def _st_folder(tmp: Path, name: str, header: dict, data: bytes) -> Path:
    folder = _saelens(tmp, name)
    _st(folder / "sae_weights.safetensors", header, data)
    return folder


def _huge_shape(tmp: Path) -> list[str]:
    f = _st_folder(tmp, "huge", {"W_enc": {"dtype": "F32", "shape": [2 ** 32, 2 ** 32], "data_offsets": [0, 16]}},
                   b"\0" * 16)
    return ["ingest", "sae", f, *R]


def _trailing(tmp: Path) -> list[str]:
    folder = _saelens(tmp, "trail")
    w = folder / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes() + b"\0" * 4096)
    return ["ingest", "sae", folder, *R]


def _int_weights(tmp: Path) -> list[str]:
    return ["ingest", "sae", _saelens(tmp, "i32", dtype=np.int32), *R]


def _deep_cfg(tmp: Path) -> list[str]:
    folder = _saelens(tmp, "deep")
    (folder / "cfg.json").write_text('{"d_in": ' + DEEP + "}")
    return ["ingest", "sae", folder, *R]


def _deep_header(tmp: Path) -> list[str]:
    folder = _saelens(tmp, "deeph")
    h = ('{"a": ' + DEEP + "}").encode()
    (folder / "sae_weights.safetensors").write_bytes(struct.pack("<Q", len(h)) + h)
    return ["ingest", "sae", folder, *R]


def _topk(tmp: Path, name: str, k: int) -> list[str]:
    p = make_sae(8, 16, "topk", k=4)
    return ["ingest", "sae", _saelens(tmp, name, p, cfg_extra={"k": k}), *R]


def _zero_width(tmp: Path) -> list[str]:
    z = np.zeros
    f = _st_folder(tmp, "d0", {
        "W_enc": {"dtype": "F32", "shape": [8, 0], "data_offsets": [0, 0]},
        "W_dec": {"dtype": "F32", "shape": [0, 8], "data_offsets": [0, 0]},
        "b_enc": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
        "b_dec": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, z(8, np.float32).tobytes())
    cfg = json.loads((f / "cfg.json").read_text())
    cfg["d_sae"] = 0
    (f / "cfg.json").write_text(json.dumps(cfg))
    return ["ingest", "sae", f, *R]


def _negative_threshold(tmp: Path) -> list[str]:
    p = make_sae(8, 16, "jumprelu")
    p.threshold[3] = -0.5
    return ["ingest", "sae", _saelens(tmp, "negthr", p), *R]


def _layer_in_file(tmp: Path) -> list[str]:
    folder = write_saelens(tmp / "bigl", make_sae(8, 16), hook="blocks.99999999999.hook_resid_post")
    return ["ingest", "sae", folder, *R]


def _bool_tensor(tmp: Path) -> list[str]:
    folder = _saelens(tmp, "booltensor")
    from safetensors.numpy import load_file, save_file
    t = load_file(str(folder / "sae_weights.safetensors"))
    t["b_dec"] = np.ones(8, bool)
    save_file(t, str(folder / "sae_weights.safetensors"))
    return ["ingest", "sae", folder, *R]


def _npz_bomb(tmp: Path) -> list[str]:
    """A params.npz whose W_enc member is 80 MiB of zeros deflated to a few hundred KB."""
    f = tmp / "bomb" / "layer_0" / "width_16k" / "average_l0_7" / "params.npz"
    f.parent.mkdir(parents=True, exist_ok=True)
    n = 80 * 2 ** 20 // 4
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("W_enc.npy", _npy_header((8, n // 8)) + bytes(n * 4))
    return ["ingest", "sae", f, *R]


def _npz_member(tmp: Path, name: str, member: bytes, arrays: dict | None = None) -> list[str]:
    f = tmp / name / "layer_0" / "params.npz"
    f.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(f, "w") as zf:
        zf.writestr("W_enc.npy", member)
    return ["ingest", "sae", f, *R]


def _gemma(tmp: Path, name: str, mutate: Callable[[dict], None]) -> list[str]:
    p = make_sae(8, 16, "jumprelu")
    root = write_gemmascope(tmp / name, 0, p)
    z = dict(np.load(root / "params.npz"))
    mutate(z)
    np.savez(root / "params.npz", **z)
    return ["ingest", "sae", root, *R]


def _sparsify(tmp: Path, name: str, **cfg) -> list[str]:
    return ["ingest", "sae", write_sparsify(tmp / name / "layers.0", make_sae(8, 16, "topk", k=4), cfg_extra=cfg), *R]


def _openai_k(tmp: Path) -> list[str]:
    import torch
    f = write_openai(tmp / "oa" / "0.pt", make_sae(8, 16, "topk", k=4))
    sd = torch.load(f, weights_only=True)
    sd["activation_state_dict"]["k"] = -5
    torch.save(sd, f)
    return ["ingest", "sae", f, *R]


def _openai_int(tmp: Path) -> list[str]:
    import torch
    f = write_openai(tmp / "oi" / "0.pt", make_sae(8, 16, "topk", k=4))
    sd = torch.load(f, weights_only=True)
    sd["encoder.weight"] = torch.ones(16, 8, dtype=torch.int32)
    torch.save(sd, f)
    return ["ingest", "sae", f, *R]


def _dl_layer(tmp: Path) -> list[str]:
    folder = write_dictionary_learning(tmp / "dl", make_sae(8, 16), layer=0)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["trainer"]["layer"] = 99999999999
    (folder / "config.json").write_text(json.dumps(cfg))
    return ["ingest", "sae", folder, *R]


def _dl_no_trainer(tmp: Path) -> list[str]:
    folder = write_dictionary_learning(tmp / "dlt", make_sae(8, 16), layer=0)
    (folder / "config.json").write_text(json.dumps({"buffer": {}}))
    return ["ingest", "sae", folder, *R]


def _snapshot_ambiguous(tmp: Path) -> list[str]:
    p = make_sae(8, 16, "jumprelu")
    write_gemmascope(tmp / "snap", 0, p, l0="average_l0_7")
    write_gemmascope(tmp / "snap", 0, p, l0="average_l0_70")
    return ["ingest", "sae", tmp / "snap", *R]


def _home_file(tmp: Path) -> list[str]:
    f = tmp / "a-file"
    f.write_text("not a home")
    return ["status", "--home", f]


# ---------------------------------------------------------------- descriptions
def _desc(tmp: Path, name: str, rows: list[dict], *extra: str) -> list[str]:
    return ["ingest", "descriptions", write_jsonl(tmp / name, rows), *R, *extra]


def _text(tmp: Path, name: str, text: str | bytes) -> Path:
    f = tmp / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return f


def _gz_line_bomb(tmp: Path) -> list[str]:
    f = tmp / "bomb.jsonl.gz"
    f.write_bytes(gzip.compress(b'{"description": "' + b"a" * (65 * 2 ** 20) + b'"}\n', 9))
    return ["ingest", "descriptions", f, *R]


def _json_gz_bomb(tmp: Path) -> list[str]:
    f = tmp / "bomb.json.gz"
    f.write_bytes(gzip.compress(b"[" + b" " * (70 * 2 ** 20) + b"]", 9))
    return ["ingest", "descriptions", f, *R]


def _export(tmp: Path, name: str, kind: str, row: dict) -> list[str]:
    exports = write_neuronpedia_export(tmp / name, "gpt2-small", {"0-res-jb": {kind: [row]}})
    return ["ingest", "descriptions", exports, *R]


def _neuron(**kw) -> dict:
    row = neuronpedia_neuron_row("0-res-jb", 1, max_act=1.0, frac=0.1, pos=[], neg=[], cos=[])
    return {**row, **kw}


# ---------------------------------------------------------------- results
def _clusters(tmp: Path, path: Path, *extra: str) -> list[str]:
    return ["ingest", "clusters", path, *R, "--layer", "0", "--space", "decoder", *extra]


def _matches(path: Path, *extra: str) -> list[str]:
    return ["ingest", "matches", path, *R, "--space", "decoder", "--method", "folded", *extra]


def _transport(path: Path, *extra: str) -> list[str]:
    return ["ingest", "transport", path, *R, "--space", "decoder", "--solver", "emd", "--src-layer", "0", *extra]


def _acts(path: Path, *extra: str) -> list[str]:
    return ["ingest", "activations", path, *R, "--layer", "0", *extra]


def _perm(tmp: Path, name: str = "perm.npy") -> Path:
    return write_labels(tmp / name, np.arange(16)[::-1].copy())


def _q(sql: str, *extra: str) -> list[str]:
    return ["query", sql, *extra]


def _home_path(home: Path, rel: str) -> str:
    return str(home / rel).replace("'", "''")


Case = tuple[str, Callable[[Path, Path], list], str]
CASES: list[Case] = [
    # ---- ingest sae: values
    ("sae-layer-option-int64", lambda t, h: ["ingest", "sae", _saelens(t, "a"), *R, "--layer", "99999999999"],
     "argument --layer: 99999999999 is out of range"),
    ("sae-layer-option-negative", lambda t, h: ["ingest", "sae", _saelens(t, "a"), *R, "--layer", "-1"],
     "argument --layer: -1 is out of range"),
    ("sae-layer-in-hook-name", lambda t, h: _layer_in_file(t), "layer 99999999999 is out of range"),
    ("sae-int32-weights", lambda t, h: _int_weights(t), "has dtype int32"),
    ("sae-bool-tensor", lambda t, h: _bool_tensor(t), "b_dec has dtype bool"),
    ("sae-topk-k-negative", lambda t, h: _topk(t, "kneg", -5), "TopK k = -5"),
    ("sae-topk-k-above-d-sae", lambda t, h: _topk(t, "kbig", 17), "TopK k = 17 must be in 1..d_sae (16)"),
    ("sae-d-sae-zero", lambda t, h: _zero_width(t), "d_sae = 0"),
    ("sae-negative-threshold", lambda t, h: _negative_threshold(t), "JumpReLU threshold -0.5 is negative"),
    ("sae-nan-weights", lambda t, h: ["ingest", "sae", _saelens(t, "nan", _with(make_sae(8, 16), "w_dec", np.nan)), *R],
     "NaN or Inf"),
    ("sae-shape-vs-config", lambda t, h: ["ingest", "sae", _saelens(t, "cfg17", cfg_extra={"d_sae": 17}), *R],
     "expected (8, 17)"),
    ("sae-unknown-architecture", lambda t, h: ["ingest", "sae", _saelens(t, "mp", cfg_extra={"architecture": "mp"}), *R],
     "unsupported SAELens architecture"),
    # ---- ingest sae: safetensors resources
    ("safetensors-shape-2^32x2^32", lambda t, h: _huge_shape(t), "declares shape [4294967296, 4294967296]"),
    ("safetensors-trailing-bytes", lambda t, h: _trailing(t), "4096 bytes of trailing data"),
    ("safetensors-truncated", lambda t, h: ["ingest", "sae", _truncate(_saelens(t, "tr"), 40), *R], "truncated"),
    ("safetensors-header-longer-than-file",
     lambda t, h: ["ingest", "sae", _st_raw(_saelens(t, "hl"), struct.pack("<Q", 10 ** 9) + b"{}"), *R],
     "header claims 1000000000 bytes"),
    ("safetensors-header-not-json",
     lambda t, h: ["ingest", "sae", _st_raw(_saelens(t, "hj"), struct.pack("<Q", 5) + b"{oops"), *R],
     "header is not JSON"),
    ("safetensors-header-nested-5000", lambda t, h: _deep_header(t), "corrupt safetensors file"),
    ("safetensors-bad-offsets",
     lambda t, h: _st_folder(t, "off", {"W_enc": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}},
                             b"\0" * 12) and ["ingest", "sae", t / "off", *R], "declares shape [2] (8 bytes)"),
    ("safetensors-unknown-dtype",
     lambda t, h: _st_folder(t, "dt", {"W_enc": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
                             b"\0" * 8) and ["ingest", "sae", t / "dt", *R], "unsupported dtype C64"),
    ("cfg-json-nested-5000", lambda t, h: _deep_cfg(t), "JSON nested too deeply"),
    ("cfg-json-malformed", lambda t, h: ["ingest", "sae", _cfg_text(_saelens(t, "cm"), "{oops"), *R], "cfg.json: not valid JSON"),
    ("cfg-json-not-object", lambda t, h: ["ingest", "sae", _cfg_text(_saelens(t, "cl"), "[1, 2]"), *R], "expected a JSON object"),
    # ---- other SAE formats
    ("npz-deflate-bomb", lambda t, h: _npz_bomb(t), "a compression bomb"),
    ("npz-member-declares-2^32x2^32",
     lambda t, h: _npz_member(t, "npzh", _npy_header((2 ** 32, 2 ** 32)) + b"\0" * 64), "declares shape [4294967296, 4294967296]"),
    ("npz-pickled-member", lambda t, h: _npz_member(t, "npzp", _npy_header((2,), "|O") + b"\0" * 16), "pickles are refused"),
    ("npz-truncated", lambda t, h: ["ingest", "sae", _truncate(write_gemmascope(t / "gt", 0, make_sae(8, 16, "jumprelu"))
                                                              / "params.npz", 300), *R], "params.npz"),
    ("npz-int-weights", lambda t, h: _gemma(t, "gi", lambda z: z.update(W_enc=z["W_enc"].astype(np.int64))), "dtype int64"),
    ("npz-negative-threshold", lambda t, h: _gemma(t, "gn", lambda z: z.update(threshold=-z["threshold"])), "is negative"),
    ("sparsify-k-zero", lambda t, h: _sparsify(t, "s0", k=0), "positive k"),
    ("sparsify-transcoder", lambda t, h: _sparsify(t, "st", transcode=True), "transcode is set"),
    ("openai-pickle-runs-code", lambda t, h: ["ingest", "sae", write_evil_pt(t / "ev" / "0.pt", t / "pwned", make_sae(8, 16, "topk", k=2)), *R],
     "would run code"),
    ("openai-truncated", lambda t, h: ["ingest", "sae", _truncate(write_openai(t / "otr" / "0.pt", make_sae(8, 16, "topk", k=2)), 300), *R],
     "not a readable torch checkpoint"),
    ("openai-k-negative", lambda t, h: _openai_k(t), "TopK k = -5"),
    ("openai-int-weights", lambda t, h: _openai_int(t), "encoder.weight has dtype int32"),
    ("dictlearn-layer-int64", lambda t, h: _dl_layer(t), "layer 99999999999 is out of range"),
    ("dictlearn-no-trainer", lambda t, h: _dl_no_trainer(t), "expected a 'trainer' object"),
    ("snapshot-two-l0s-one-layer", lambda t, h: _snapshot_ambiguous(t), "choose with --width W and/or --average-l0 L"),
    ("sae-missing-path", lambda t, h: ["ingest", "sae", t / "nope", *R], "no such file or directory"),
    ("sae-bad-release-name", lambda t, h: ["ingest", "sae", _saelens(t, "a"), "--release", "../x"], "release names must match"),
    ("sae-unknown-format", lambda t, h: ["ingest", "sae", _saelens(t, "a"), *R, "--format", "onnx"], "invalid choice: 'onnx'"),
    ("home-is-a-file", lambda t, h: _home_file(t), "is a file, not a directory"),
    ("home-under-a-file", lambda t, h: [*_home_file(t)[:-1], t / "a-file" / "home"], "which is a file, not a directory"),
    # ---- ingest descriptions
    ("jsonl-gz-one-line-bomb", lambda t, h: _gz_line_bomb(t), "line longer than 67108864 bytes"),
    ("json-gz-bomb", lambda t, h: _json_gz_bomb(t), "is larger than 67108864 bytes"),
    ("jsonl-nested-5000", lambda t, h: ["ingest", "descriptions", _text(t, "deep.jsonl", DEEP + "\n"), *R], "JSON nested too deeply"),
    ("json-nested-5000", lambda t, h: ["ingest", "descriptions", _text(t, "deep.json", DEEP), *R], "JSON nested too deeply"),
    ("json-list-of-lists", lambda t, h: ["ingest", "descriptions", _text(t, "ll.json", "[[{}]]"), *R], "expected a JSON object, found list"),
    ("desc-layer-int64", lambda t, h: _desc(t, "l.jsonl", [neuronpedia_row(99999999999, 1, "x")]), "layer 99999999999 is out of range"),
    ("desc-layer-option-int64", lambda t, h: _desc(t, "l2.jsonl", [neuronpedia_row(0, 1, "x")], "--layer", "2147483648"),
     "argument --layer: 2147483648 is out of range"),
    ("desc-malformed-line", lambda t, h: ["ingest", "descriptions", _text(t, "m.jsonl", '{"layer": "0-res"\n'), *R], "malformed JSON line"),
    ("desc-not-gzip", lambda t, h: ["ingest", "descriptions", _text(t, "ng.jsonl.gz", "{}\n"), *R], "not a gzip file"),
    ("desc-not-utf8", lambda t, h: ["ingest", "descriptions", _text(t, "u.jsonl", b"\xff\xfe\n"), *R], "not UTF-8"),
    ("desc-feature-out-of-range", lambda t, h: _desc(t, "f.jsonl", [neuronpedia_row(0, 16, "x")]), "feature 16 is out of range"),
    ("desc-negative-index", lambda t, h: _desc(t, "n.jsonl", [neuronpedia_row(0, "-1", "x")]), "non-negative integer"),
    ("desc-layer-without-sae", lambda t, h: _desc(t, "w.jsonl", [neuronpedia_row(5, 1, "x")]), "layer 5 has no SAE ingested"),
    ("desc-wrong-suffix", lambda t, h: ["ingest", "descriptions", _text(t, "d.txt", "x"), *R], "expected a .json, .jsonl or .jsonl.gz"),
    ("export-umap-cluster-beyond-int32",
     lambda t, h: _export(t, "eu", "explanations", neuronpedia_explanation_row("0-res-jb", 1, "d", umap=(1.0, 2.0, BIG))),
     "umap_cluster 4294967297 is out of range"),
    ("export-nan-activation", lambda t, h: _export(t, "ea", "activations", {
        "id": "a", "layer": "0-res-jb", "index": "1", "tokens": ["a"], "values": [float("nan")], "maxValue": 1.0,
        "maxValueTokenIndex": 0}), "values must be a list of finite float32 numbers"),
    ("export-frac-nonzero-above-1", lambda t, h: _export(t, "ef", "features", _neuron(frac_nonzero=1.5)), "frac_nonzero must be in [0, 1]"),
    ("export-cos-index-beyond-int32", lambda t, h: _export(t, "ec", "features", _neuron(topkCosSimIndices=[BIG], topkCosSimValues=[0.5])),
     "topkCosSimIndices must be a list of int32 integers"),
    ("export-max-act-beyond-float32", lambda t, h: _export(t, "em", "features", _neuron(maxActApprox=1e39)), "maxActApprox must be a finite number"),
    # ---- ingest clusters
    ("clusters-label-beyond-int32", lambda t, h: _clusters(t, write_labels(t / "big.npy", np.r_[np.zeros(15, np.int64), BIG])),
     "labels 4294967297 is out of range"),
    ("clusters-csv-nan-probability", lambda t, h: _clusters(t, _text(t, "nanp.csv", "feature,cluster,probability\n0,1,nan\n1,1,0.5\n")),
     "probability holds NaN or Inf"),
    ("clusters-probability-above-1", lambda t, h: _clusters(t, write_table(t / "p15.parquet", {"feature": [0, 1], "cluster": [1, 1], "probability": [0.5, 1.5]})),
     "probability 1.5 is outside [0, 1]"),
    ("clusters-label-below-minus-2", lambda t, h: _clusters(t, write_labels(t / "m3.npy", np.r_[np.zeros(15, np.int64), -3])), "cluster label -3 is invalid"),
    ("clusters-npy-pickled", lambda t, h: _clusters(t, _text(t, "obj.npy", _npy_header((2,), "|O") + b"\0" * 16)), "pickles are refused"),
    ("clusters-npy-declares-more", lambda t, h: _clusters(t, _text(t, "short.npy", _npy_header((2 ** 32, 2 ** 32), "<i8") + b"\0" * 64)),
     "declares shape [4294967296, 4294967296]"),
    ("clusters-wrong-length", lambda t, h: _clusters(t, write_labels(t / "l5.npy", np.zeros(5, np.int64))), "expected (16,)"),
    ("clusters-layer-without-sae", lambda t, h: ["ingest", "clusters", write_labels(t / "z.npy", np.zeros(16, np.int64)), *R,
                                                 "--layer", "7", "--space", "decoder"], "no SAE at layer 7"),
    ("clusters-csv-float-x-beyond-float32", lambda t, h: _clusters(t, _text(t, "x.csv", "feature,cluster,x\n0,1,1e39\n")),
     "x holds values beyond float32"),
    # ---- ingest matches
    ("matches-backwards-layers", lambda t, h: _matches(_perm(t), "--src-layer", "1", "--dst-layer", "0"),
     "--dst-layer 0 must be after --src-layer 1"),
    ("matches-same-layer", lambda t, h: _matches(_perm(t), "--src-layer", "1", "--dst-layer", "1"), "must be after --src-layer 1"),
    ("matches-backwards-file-name", lambda t, h: _matches(_perm(t, "P_01_00.npy")), "--dst-layer 0 must be after --src-layer 1"),
    ("matches-not-one-to-one", lambda t, h: _matches(write_labels(t / "nb.npy", np.zeros(16, np.int64)), "--src-layer", "0"),
     "not one-to-one"),
    ("matches-src-layer-int64", lambda t, h: _matches(_perm(t), "--src-layer", "99999999999"), "argument --src-layer: 99999999999 is out of range"),
    ("match-has-no-layer-options", lambda t, h: ["match", *R, "--src-layer", "1", "--dst-layer", "0"], "unrecognized arguments"),
    # ---- ingest transport
    ("transport-backwards-layers", lambda t, h: _transport(write_table(t / "t.csv", {"src_cluster": [0], "dst_cluster": [0], "mass": [1.0]}),
                                                           "--dst-layer", "0"), "must be after --src-layer 0"),
    ("transport-negative-mass", lambda t, h: _transport(write_table(t / "tn.csv", {"src_cluster": [0], "dst_cluster": [0], "mass": [-1.0]})),
     "negative transport mass"),
    ("transport-cluster-beyond-int32", lambda t, h: _transport(write_table(t / "tb.parquet", {"src_cluster": [BIG], "dst_cluster": [0], "mass": [1.0]})),
     "src_cluster 4294967297 is out of range"),
    ("transport-csv-nan-mass", lambda t, h: _transport(_text(t, "tnan.csv", "src_cluster,dst_cluster,mass\n0,0,nan\n")), "mass holds NaN or Inf"),
    # ---- ingest activations
    ("activations-n-tokens-2^63", lambda t, h: _acts(write_sparse(t / "a.npz", np.ones((4, 16), np.float32)), "--n-tokens", str(2 ** 63)),
     "argument --n-tokens: 9223372036854775808 is out of range"),
    ("activations-negative-values-npz", lambda t, h: _acts(write_sparse(t / "neg.npz", -np.ones((4, 16), np.float32))),
     "activation value -1.0 is not positive"),
    ("activations-negative-values-parquet", lambda t, h: _acts(write_table(t / "neg.parquet", {"token_id": [0], "feature": [1], "value": [-2.0]}),
                                                               "--n-tokens", "4"), "activation value -2.0 is not positive"),
    ("activations-parquet-needs-n-tokens", lambda t, h: _acts(write_table(t / "nt.parquet", {"token_id": [0], "feature": [1], "value": [2.0]})),
     "needs --n-tokens"),
    ("activations-wrong-width", lambda t, h: _acts(write_sparse(t / "w.npz", np.ones((4, 15), np.float32))), "expected (n_tokens, 16)"),
    ("activations-token-beyond-n-tokens", lambda t, h: _acts(write_table(t / "tk.parquet", {"token_id": [9], "feature": [1], "value": [2.0]}),
                                                             "--n-tokens", "4"), "token_id 9 is out of range"),
    ("activations-value-beyond-float32", lambda t, h: _acts(write_table(t / "f32.parquet", {"token_id": [0], "feature": [1], "value": [1e39]}),
                                                            "--n-tokens", "4"), "beyond float32"),
    ("activations-npz-bomb", lambda t, h: _acts(_npz_bomb_sparse(t)), "a compression bomb"),
    # ---- numeric options of the other commands
    ("train-tokens-10^12", lambda t, h: ["train", *R, "--tokens", str(10 ** 12)], "argument --tokens: 1000000000000 is out of range"),
    ("train-k-not-a-number", lambda t, h: ["train", *R, "--k", "abc"], "argument --k: 'abc' is not an integer"),
    ("train-lr-nan", lambda t, h: ["train", *R, "--lr", "nan"], "argument --lr: nan is not a finite number"),
    ("harvest-tokens-zero", lambda t, h: ["harvest", *R, "--model", "minilm", "--corpus", "builtin", "--tokens", "0"],
     "argument --tokens: 0 is out of range"),
    ("seed-negative", lambda t, h: ["match", *R, "--seed", "-1"], "argument --seed: -1 is out of range"),
    ("cluster-layer-int64", lambda t, h: ["cluster", *R, "--space", "decoder", "--layer", "99999999999"], "argument --layer"),
    ("match-draws-zero", lambda t, h: ["match", *R, "--method", "random", "--draws", "0"], "argument --draws: 0 is out of range"),
    ("demo-tokens-2^63", lambda t, h: ["demo", "--tokens", str(2 ** 63)], "argument --tokens"),
    ("missing-required-option", lambda t, h: ["ingest", "clusters", t / "x.npy", *R], "the following arguments are required"),
    # ---- saew query is read-only
    ("query-copy-to-lake", lambda t, h: _q(f"COPY (SELECT 1 AS a) TO '{_home_path(h, 'lake/saes/release=r/part-0.parquet')}'"),
     "COPY statements are refused"),
    ("query-attach", lambda t, h: _q(f"ATTACH '{t}/other.duckdb' AS o"), "ATTACH statements are refused"),
    ("query-detach", lambda t, h: _q("DETACH saew"), "DETACH statements are refused"),
    ("query-install", lambda t, h: _q("INSTALL httpfs"), "INSTALL statements are refused"),
    ("query-load", lambda t, h: _q("LOAD httpfs"), "LOAD statements are refused"),
    ("query-set-path", lambda t, h: _q(f"SET temp_directory = '{t}'"), "SET statements are refused"),
    ("query-pragma-profile-output", lambda t, h: _q(f"PRAGMA profile_output = '{t}/p.json'"), "PRAGMA statements are refused"),
    ("query-create-table", lambda t, h: _q("CREATE TABLE x AS SELECT 1"), "CREATE statements are refused"),
    ("query-insert", lambda t, h: _q("INSERT INTO saes SELECT * FROM saes"), "INSERT statements are refused"),
    ("query-update", lambda t, h: _q("UPDATE saes SET k = 1"), "UPDATE statements are refused"),
    ("query-delete", lambda t, h: _q("DELETE FROM saes"), "DELETE statements are refused"),
    ("query-drop-view", lambda t, h: _q("DROP VIEW saes"), "DROP statements are refused"),
    ("query-alter", lambda t, h: _q("ALTER VIEW saes RENAME TO s2"), "ALTER statements are refused"),
    ("query-export-database", lambda t, h: _q(f"EXPORT DATABASE '{t}/exp'"), "EXPORT statements are refused"),
    ("query-import-database", lambda t, h: _q(f"IMPORT DATABASE '{t}/exp'"), "statements are refused"),
    ("query-explain-analyze-copy", lambda t, h: _q(f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{t}/e.csv'"), "COPY statements are refused"),
    ("query-second-statement-copy", lambda t, h: _q(f"SELECT 1; COPY (SELECT 1) TO '{t}/s.csv'"), "COPY statements are refused"),
    ("query-allow-write-copy-into-home", lambda t, h: _q(f"COPY (SELECT 1 AS a) TO '{_home_path(h, 'lake/x.parquet')}'", "--allow-write"),
     "is inside the home"),
    ("query-allow-write-attach-home-catalog", lambda t, h: _q(f"ATTACH '{_home_path(h, 'saew.duckdb')}' AS c2", "--allow-write"),
     "is inside the home"),
    ("query-allow-write-copy-target-expression", lambda t, h: _q("COPY (SELECT 1) TO getvariable('p')", "--allow-write"),
     "Parser Error"),
    ("export-out-into-lake", lambda t, h: ["export", "--out", h / "lake" / "marts"], "inside the warehouse's own files"),
    ("query-parquet-out-into-lake", lambda t, h: _q("SELECT 1 AS a", "--format", "parquet", "--out", str(h / "lake" / "saes" / "x.parquet")),
     "inside the home"),
    ("query-syntax-error", lambda t, h: _q("SELEC 1"), "query: Parser Error"),
    ("query-unknown-table", lambda t, h: _q("SELECT * FROM no_such_table"), "no_such_table"),
    ("query-missing-sql-file", lambda t, h: _q(str(t / "missing.sql")), "no such SQL file"),
    ("query-max-rows-negative", lambda t, h: _q("SELECT 1", "--max-rows", "-1"), "argument --max-rows: -1 is out of range"),
]


def _with(p, name: str, value):
    getattr(p, name)[0, 0] = value
    return p


def _truncate(path: Path, n: int) -> Path:
    f = path / "sae_weights.safetensors" if path.is_dir() else path
    f.write_bytes(f.read_bytes()[:-n] if n < f.stat().st_size else f.read_bytes()[:10])
    return path


def _st_raw(folder: Path, data: bytes) -> Path:
    (folder / "sae_weights.safetensors").write_bytes(data)
    return folder


def _cfg_text(folder: Path, text: str) -> Path:
    (folder / "cfg.json").write_text(text)
    return folder


def _npz_bomb_sparse(tmp: Path) -> Path:
    f = tmp / "bomb-acts.npz"
    write_sparse(f, np.ones((4, 16), np.float32))
    n = 80 * 2 ** 20
    with zipfile.ZipFile(f, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pad.npy", _npy_header((n,), "|u1") + bytes(n))
    return f


# ---------------------------------------------------------------- the run
def _state(home: Path) -> dict[str, str]:
    """Every file of the lake and the SAE folders, by content."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ("lake", "saes") for p in sorted((home / d).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("refusals") / "home"
    lake = Lake(home)
    put_sae(lake, "r", 0, make_sae(8, 16, "relu", seed=0))
    put_sae(lake, "r", 1, make_sae(8, 16, "relu", seed=1))
    return home


def test_the_catalogue_is_big_and_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60, len(ids)
    kinds = {c[0].split("-")[0] for c in CASES}
    assert {"sae", "safetensors", "npz", "openai", "sparsify", "dictlearn", "desc", "export", "clusters",
            "matches", "transport", "activations", "query", "train", "harvest"} <= kinds


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused(warehouse: Path, tmp_path: Path, case: Case):
    _, build, expect = case
    argv = build(tmp_path, warehouse)
    before = _state(warehouse)
    code, out, err = run_saew(warehouse, *argv)
    assert code == 2, (argv, code, out, err)
    assert err.startswith("saew: error: ") and err.count("\n") == 1, err
    assert expect in err, err
    assert "Traceback" not in out + err
    assert _state(warehouse) == before
    assert not (tmp_path / "pwned").exists()
