"""Writers of every outside format in its exact layout (tensor names, shapes, orientation, dtypes).

SAE checkpoints take an ``SAEParams`` in SAELens orientation (W_enc [d_in, d_sae],
W_dec [d_sae, d_in]) and write it the way the original library does. Neuronpedia exports and
result files (labels, permutations, OT plans, sparse activations) are written here too.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from saew.sae.params import SAEParams

_SAELENS_ARCH = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk", "gated": "gated"}


# ---------------------------------------------------------------- SAE checkpoints
def write_saelens(folder: Path, p: SAEParams, *, hook: str = "blocks.3.hook_resid_post",
                  model: str = "gpt2", pre6: bool = False, dtype=np.float32,
                  cfg_extra: dict | None = None) -> Path:
    """A SAELens folder: ``cfg.json`` + ``sae_weights.safetensors`` (v6 layout, or a pre-6 cfg)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    t = {"W_enc": p.w_enc.astype(dtype), "W_dec": p.w_dec.astype(dtype),
         "b_enc": p.b_enc.astype(dtype), "b_dec": p.b_dec.astype(dtype)}
    if p.threshold is not None:
        t["threshold"] = p.threshold.astype(dtype)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(folder / "sae_weights.safetensors"))
    if pre6:
        m = __import__("re").search(r"blocks\.(\d+)\.", hook)
        cfg = {"d_in": p.d_in, "d_sae": p.d_sae, "model_name": model, "hook_point": hook,
               "hook_point_layer": int(m.group(1)) if m else 0, "hook_point_head_index": None,
               "activation_fn_str": "topk" if p.architecture == "topk" else "relu",
               "activation_fn_kwargs": {"k": p.k} if p.architecture == "topk" else {},
               "apply_b_dec_to_input": p.apply_b_dec_to_input, "normalize_activations": "none",
               "dtype": "float32", "device": "cpu", "sae_lens_training_version": "3.13.0"}
        if p.architecture == "jumprelu":
            cfg["architecture"] = "jumprelu"
    else:
        cfg = {"d_in": p.d_in, "d_sae": p.d_sae, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": p.apply_b_dec_to_input,
               "normalize_activations": p.normalize, "reshape_activations": "none",
               "metadata": {"sae_lens_version": "6.5.0", "sae_lens_training_version": "6.5.0",
                            "model_name": model, "hook_name": hook},
               "architecture": _SAELENS_ARCH[p.architecture]}
        if p.architecture == "topk":
            cfg["k"] = p.k
    cfg.update(cfg_extra or {})
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def openai_state_dict(p: SAEParams) -> dict:
    """OpenAI sparse_autoencoder ``Autoencoder.state_dict()`` (v5: TopK, layer-normalised inputs)."""
    import torch

    n, d = p.d_sae, p.d_in
    return {
        "pre_bias": torch.from_numpy(p.b_dec.copy()),
        "latent_bias": torch.from_numpy(p.b_enc.copy()),
        "stats_last_nonzero": torch.zeros(n, dtype=torch.long),
        "latents_activation_frequency": torch.ones(n, dtype=torch.float32) * 1e-3,
        "latents_mean_square": torch.ones(n, dtype=torch.float32),
        "encoder.weight": torch.from_numpy(np.ascontiguousarray(p.w_enc.T)),   # [n, d]
        "decoder.weight": torch.from_numpy(np.ascontiguousarray(p.w_dec.T)),   # [d, n]
        "activation": "TopK" if p.architecture == "topk" else "ReLU",
        "activation_state_dict": {"k": int(p.k), "postact_fn": "ReLU"} if p.architecture == "topk" else {},
    }


def write_openai(path: Path, p: SAEParams) -> Path:
    """``<folder>/N.pt`` as OpenAI publishes them (``torch.save`` of the state dict)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(openai_state_dict(p), path)
    return path


def write_gemmascope(root: Path, layer: int, p: SAEParams, *, width: str = "width_16k",
                     l0: str = "average_l0_71") -> Path:
    """``<root>/layer_N/width_*/average_l0_*/params.npz`` with W_enc [d, n], W_dec [n, d], ..."""
    folder = root / f"layer_{layer}" / width / l0
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", W_enc=p.w_enc.astype(np.float32), W_dec=p.w_dec.astype(np.float32),
             b_enc=p.b_enc.astype(np.float32), b_dec=p.b_dec.astype(np.float32),
             threshold=p.threshold.astype(np.float32))
    return folder


def write_sparsify(folder: Path, p: SAEParams, *, cfg_extra: dict | None = None, num_latents: bool = True,
                   dtype: str = "float32") -> Path:
    """``cfg.json`` + ``sae.safetensors`` as ``sparsify.SparseCoder.save_to_disk`` writes them
    (SparseCoderConfig fields plus d_in; tensors encoder.weight [n, d], encoder.bias, W_dec, b_dec)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    n, d = p.d_sae, p.d_in
    cfg = {"activation": "topk", "expansion_factor": n // d if not num_latents else 32,
           "normalize_decoder": True, "num_latents": n if num_latents else 0, "k": int(p.k),
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": d}
    cfg.update(cfg_extra or {})
    (folder / "cfg.json").write_text(json.dumps(cfg))
    dt = getattr(torch, dtype)
    save_file({"encoder.weight": torch.from_numpy(np.ascontiguousarray(p.w_enc.T)).to(dt),
               "encoder.bias": torch.from_numpy(p.b_enc.copy()).to(dt),
               "W_dec": torch.from_numpy(np.ascontiguousarray(p.w_dec)).to(dt),
               "b_dec": torch.from_numpy(p.b_dec.copy()).to(dt)}, str(folder / "sae.safetensors"))
    return folder


def write_dictionary_learning(folder: Path, p: SAEParams, layer: int, *,
                              dict_class: str | None = None, lm_name: str = "EleutherAI/pythia-70m-deduped",
                              config_layer: bool = True) -> Path:
    """``ae.pt`` + ``config.json`` as dictionary_learning's trainers save them."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    if dict_class is None:
        dict_class = {"relu": "AutoEncoder", "topk": "AutoEncoderTopK", "jumprelu": "JumpReluAutoEncoder"}[p.architecture]
    if dict_class == "JumpReluAutoEncoder":
        sd = {"W_enc": t(p.w_enc), "b_enc": t(p.b_enc), "W_dec": t(p.w_dec), "b_dec": t(p.b_dec),
              "threshold": t(p.threshold)}
    else:
        sd = {"encoder.weight": t(p.w_enc.T), "encoder.bias": t(p.b_enc), "decoder.weight": t(p.w_dec.T)}
        if dict_class == "AutoEncoder":
            sd = {"bias": t(p.b_dec), **sd}
        else:
            sd = {"b_dec": t(p.b_dec), **sd, "k": torch.tensor(int(p.k)), "threshold": torch.tensor(-1.0)}
    torch.save(sd, folder / "ae.pt")
    trainer = {"trainer_class": {"AutoEncoder": "StandardTrainer", "AutoEncoderTopK": "TopKTrainer",
                                 "BatchTopKSAE": "BatchTopKTrainer"}.get(dict_class, "JumpReluTrainer"),
               "dict_class": dict_class, "activation_dim": p.d_in, "dict_size": p.d_sae, "lr": 1e-4,
               "lm_name": lm_name, "submodule_name": f"resid_post_layer_{layer}", "device": "cpu"}
    if config_layer:
        trainer["layer"] = layer
    if p.k is not None:
        trainer["k"] = int(p.k)
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"ctx_len": 128}}))
    return folder


class _Evil:
    """A pickle that would run code when unpickled (creates ``marker``)."""
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_evil_pt(path: Path, marker: Path, p: SAEParams) -> Path:
    """An OpenAI-looking ``.pt`` whose pickle executes code (touches ``marker``) when loaded unsafely."""
    import torch

    sd = openai_state_dict(p)
    sd["payload"] = _Evil(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


# ---------------------------------------------------------------- Neuronpedia exports
def neuronpedia_row(layer: int, index: int | str, description: str, *, explainer: str = "gpt-4o-mini",
                    model: str = "gpt2-small", sae_id: str = "res-jb") -> dict:
    """One bulk-export row (``explanations/batch-N.jsonl.gz``)."""
    return {"modelId": model, "layer": f"{layer}-{sae_id}", "index": index, "description": description,
            "explanationModelName": explainer, "typeName": "oai_token-act-pair",
            "authorId": "clz", "createdAt": "2024-07-01T00:00:00.000Z"}


def write_jsonl_gz(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def neuronpedia_feature(layer: int, index: int, explanations: list[tuple[str, str]],
                        model: str = "gpt2-small", sae_id: str = "res-jb") -> dict:
    """The per-feature API JSON (``/api/feature/<model>/<layer>/<index>``)."""
    lay = f"{layer}-{sae_id}"
    return {"modelId": model, "layer": lay, "index": str(index), "maxActApprox": 12.5,
            "activations": [], "explanations": [
                {"id": f"e{i}", "modelId": model, "layer": lay, "index": str(index),
                 "description": d, "explanationModelName": m, "typeName": "oai_token-act-pair"}
                for i, (d, m) in enumerate(explanations)]}


def neuronpedia_activation_row(source: str, index: int, tokens: list[str], values: list[float], *,
                               row_id: str = "", model: str = "gpt2-small") -> dict:
    """One ``activations/batch-N.jsonl.gz`` row, with the exporter's columns (table Activation)."""
    peak = int(np.argmax(values))
    return {"id": row_id or f"act-{source}-{index}-{peak}-{len(tokens)}", "modelId": model, "layer": source,
            "index": str(index), "creatorId": "clz", "dataSource": None, "tokens": tokens,
            "maxValue": float(max(values)), "minValue": float(min(values)), "values": values,
            "maxValueTokenIndex": peak, "dfaValues": [], "dfaMaxValue": None, "dfaTargetIndex": None,
            "binContains": -1, "binMin": -1, "binMax": -1}


def neuronpedia_neuron_row(source: str, index: int, *, max_act: float, frac: float,
                           pos: list[tuple[str, float]], neg: list[tuple[str, float]],
                           cos: list[tuple[int, float]], model: str = "gpt2-small") -> dict:
    """One ``features/batch-N.jsonl.gz`` row, with the exporter's columns (table Neuron)."""
    return {"modelId": model, "layer": source, "index": str(index), "maxActApprox": max_act,
            "creatorId": "clz", "frac_nonzero": frac, "freq_hist_data_bar_heights": [3.0, 1.0],
            "freq_hist_data_bar_values": [0.5, 1.5], "logits_hist_data_bar_heights": [],
            "logits_hist_data_bar_values": [], "neuron_alignment_indices": [], "neuron_alignment_l1": [],
            "neuron_alignment_values": [], "correlated_neurons_indices": [], "correlated_neurons_l1": [],
            "correlated_neurons_pearson": [], "decoder_weights_dist": [],
            "neg_str": [t for t, _ in neg], "neg_values": [v for _, v in neg],
            "pos_str": [t for t, _ in pos], "pos_values": [v for _, v in pos], "sourceSetName": "res-jb",
            "topkCosSimIndices": [i for i, _ in cos], "topkCosSimValues": [v for _, v in cos],
            "vector": [], "vectorLabel": None, "hookName": None, "vectorDefaultSteerStrength": 10,
            "hasVector": False}


def neuronpedia_explanation_row(source: str, index: int, description: str, *, umap: tuple | None = None,
                                explainer: str = "gpt-4o-mini", model: str = "gpt2-small") -> dict:
    """One ``explanations/batch-N.jsonl.gz`` row, with the exporter's columns (table Explanation)."""
    x, y, c = umap if umap is not None else (0.0, 0.0, 0)  # the database defaults
    return {"id": f"exp-{source}-{index}-{explainer}", "modelId": model, "layer": source, "index": str(index),
            "authorId": "clz", "description": description, "embedding": None,
            "typeName": "oai_token-act-pair", "explanationModelName": explainer,
            "umap_x": x, "umap_y": y, "umap_cluster": c, "umap_log_feature_sparsity": 0.0}


def write_neuronpedia_export(root: Path, model: str, sources: dict[str, dict[str, list[dict]]],
                             batch_size: int = 2) -> Path:
    """An export folder as Neuronpedia's exporter writes it: ``exports/<model>/<source>/`` with
    model/source jsonl metadata and ``{explanations,features,activations}/batch-N.jsonl.gz``
    (``batch_size`` rows per batch); ``exports/config/*.jsonl`` too. Returns ``exports``."""
    exports = root / "exports"
    write_jsonl(exports / "config" / "explanation_type.jsonl", [{"name": "oai_token-act-pair"}])
    for source, kinds in sources.items():
        base = exports / model / source
        write_jsonl(base / "model.jsonl", [{"id": model, "layers": 12}])
        write_jsonl(base / "source.jsonl", [{"id": source, "modelId": model}])
        for kind, rows in kinds.items():
            for b in range(0, max(len(rows), 1), batch_size):
                write_jsonl_gz(base / kind / f"batch-{b // batch_size}.jsonl.gz", rows[b:b + batch_size])
    return exports


# ---------------------------------------------------------------- results computed elsewhere
def write_labels(path: Path, labels) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(labels))
    return path


def write_table(path: Path, cols: dict) -> Path:
    """A ``.csv`` or ``.parquet`` with the given columns."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    t = pa.table({k: np.asarray(v) for k, v in cols.items()})
    if path.suffix == ".csv":
        pacsv.write_csv(t, path)
    else:
        pq.write_table(t, path)
    return path


def write_sparse(path: Path, dense: np.ndarray, fmt: str = "csr") -> Path:
    """A scipy sparse matrix (tokens x features) in ``scipy.sparse.save_npz`` format."""
    import scipy.sparse as sp

    path.parent.mkdir(parents=True, exist_ok=True)
    m = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix}[fmt](dense)
    sp.save_npz(path, m)
    return path
