"""sedd.json, the manifest of an exported model directory (format 1, docs/ONNX-CONTRACT.md)."""

import json
import os
import platform

import onnx
import onnxruntime
import onnxscript
import torch

from . import tokenizers
from .checkpoints import LOGLINEAR_EPS, count_params
from .golden import TOLERANCE

FORMAT = 1


def noise_entry(config):
    """The manifest's noise field from a training config."""
    noise = config["noise"]
    if noise["type"] == "loglinear":
        # The reference's LogLinearNoise has eps = 1e-3 whatever the config says; a config
        # that records eps (ours do) is taken at its word.
        return {"type": "loglinear", "eps": float(noise.get("eps", LOGLINEAR_EPS))}
    return {"type": "geometric", "sigma_min": float(noise["sigma_min"]), "sigma_max": float(noise["sigma_max"])}


def exporter_versions():
    """sedd.json's exporter field: what wrote and checked the export. torch and onnx name the
    versions that wrote model.onnx, torch_onnx_exporter the exporter
    torch.onnx ran, onnxruntime the ONNX Runtime for Python that cross-checked it."""
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "torch_onnx_exporter": "dynamo",
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def build_manifest(name, config, model, tokenizer_kind, tokenizer_doc, onnx_info, source, golden_info,
                   length=None, check=None, tokenizer_sha256=None):
    """The sedd.json document. onnx_info comes from onnx_export.export_onnx, golden_info from
    golden.write_golden (or None), source from the checkpoint loader, check from
    ortcheck.compare (or None: not cross-checked), tokenizer_sha256 from hashes.file_sha256 of
    the written tokenizer.json (the SDK refuses a tokenizer file that does not match it)."""
    m = config["model"]
    sp = tokenizers.special_tokens(tokenizer_doc)
    return {
        "format": FORMAT,
        "kind": "sedd",
        "name": name,
        "graph": config["graph"]["type"],
        "tokens": int(config["tokens"]),
        "noise": noise_entry(config),
        "length": int(length if length is not None else m["length"]),
        "model": {
            "hidden_size": int(m["hidden_size"]),
            "n_blocks": int(m["n_blocks"]),
            "n_heads": int(m["n_heads"]),
            "cond_dim": int(m["cond_dim"]),
            "scale_by_sigma": bool(m.get("scale_by_sigma", False)),
            "params": int(count_params(model)),
            # Written from the config only, and only when true (absent reads as false).
            **({"time_independent": True} if m.get("time_independent") is True else {}),
        },
        "tokenizer": {
            "file": "tokenizer.json",
            "kind": tokenizer_kind,
            "vocab_size": tokenizers.vocab_size(tokenizer_doc),
            "special_tokens": sp,
            "eos_id": tokenizers.eos_id(tokenizer_doc),
            **({} if tokenizer_sha256 is None else {"sha256": tokenizer_sha256}),
        },
        "onnx": {k: onnx_info[k] for k in ("file", "opset", "sha256", "size", "external_data", "inputs", "outputs")},
        "source": {k: v for k, v in source.items()},
        "verify": None if golden_info is None else {
            "golden": golden_info["golden"],
            "data": golden_info["data"],
            "golden_sha256": golden_info["golden_sha256"],
            "data_sha256": golden_info["data_sha256"],
            "tolerance": TOLERANCE,
            # max |ONNX - PyTorch| over the golden cases, from ONNX Runtime for Python.
            "max_abs_err": None if check is None else check["max_abs_err"],
        },
        "exporter": exporter_versions(),
    }


def write_manifest(doc, out_dir, file_name="sedd.json"):
    """Writes doc as out_dir/sedd.json (indented, trailing newline)."""
    with open(os.path.join(out_dir, file_name), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
