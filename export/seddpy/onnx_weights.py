"""Rebuild the PyTorch network of an exported model directory from its model.onnx.

The speed comparison against the reference sampler (export/reference_sampler.py) must run
PyTorch on exactly the weights the SDK runs, including the shipped models whose training
checkpoints are not in the repository. Two layouts of model.onnx are read:

- written by onnx_export (torch.onnx's dynamo exporter): initialisers named sedd.PARAMETER hold
  that parameter; the others that hold one (folded: transposed or reshaped) are listed in the
  model's metadata under onnx_export.WEIGHTS_KEY;
- written by torch 1.13's TorchScript exporter (the shipped models): parameter names for the
  tensors it uses directly (embedding, biases, adaLN), the rest anonymous initialisers in graph
  order: the rotary inverse frequencies, then for each block norm1, attn_qkvᵀ, attn_outᵀ,
  norm2, mlp.0ᵀ, mlp.2ᵀ, then norm_final and output_layer.linearᵀ.

load_exported checks every shape on the way and compares the rebuilt network with the
directory's golden outputs, so a wrong mapping cannot pass silently.
"""

import json
import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .checkpoints import SHAPES, load_random
from .golden import read_golden
from .model import SEDD, ScoreWithLSE
from .onnx_export import WEIGHTS_KEY


class WeightsError(Exception):
    """model.onnx does not map onto the network its sedd.json describes."""


def config_from_manifest(man):
    """The reference training config (the subset SEDD needs) of a sedd.json document."""
    m = man["model"]
    noise = dict(man["noise"])
    return {
        "tokens": int(man["tokens"]),
        "graph": {"type": man["graph"]},
        "noise": noise,
        "model": {
            "hidden_size": int(m["hidden_size"]), "n_blocks": int(m["n_blocks"]),
            "n_heads": int(m["n_heads"]), "cond_dim": int(m["cond_dim"]),
            "scale_by_sigma": bool(m.get("scale_by_sigma", False)), "length": int(man["length"]),
            # without it a time-independent network would be rebuilt time-conditioned: other
            # outputs at every σ but those near 0 (the first golden case has σ = 1e-4)
            "time_independent": bool(m.get("time_independent", False)),
        },
    }


def _anonymous_plan(model):
    """(parameter name or None for a skipped buffer, transpose?, torch shape) in graph order."""
    plan = [(None, False, tuple(model.rotary_emb.inv_freq.shape))]
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        plan += [
            (p + "norm1.weight", False, tuple(blk.norm1.weight.shape)),
            (p + "attn_qkv.weight", True, tuple(blk.attn_qkv.weight.shape)),
            (p + "attn_out.weight", True, tuple(blk.attn_out.weight.shape)),
            (p + "norm2.weight", False, tuple(blk.norm2.weight.shape)),
            (p + "mlp.0.weight", True, tuple(blk.mlp[0].weight.shape)),
            (p + "mlp.2.weight", True, tuple(blk.mlp[2].weight.shape)),
        ]
    out = model.output_layer
    plan += [
        ("output_layer.norm_final.weight", False, tuple(out.norm_final.weight.shape)),
        ("output_layer.linear.weight", True, tuple(out.linear.weight.shape)),
    ]
    return plan


def _fit(t, shape, transposed):
    """t (as stored in the graph) in the parameter's shape, or None when it does not fit."""
    if transposed:
        t = t.t() if t.dim() == 2 else None
    elif tuple(t.shape) != shape and [d for d in t.shape if d != 1] == [d for d in shape if d != 1]:
        t = t.reshape(shape)  # a layer norm weight stored as [1, 1, d]
    return t.contiguous() if t is not None and tuple(t.shape) == shape else None


def _mapped_state(model, proto, mapping, onnx_path):
    """The state_dict of an onnx_export graph: named initialisers plus the WEIGHTS_KEY map
    (onnx_export.weights_map). An
    initialiser listed for a parameter in a layout that does not fit its shape (equal values
    hashed alike, such as zeros) is passed over; a parameter nothing holds is an error."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = {}
    for init in proto.graph.initializer:
        holds = [[init.name, False]] if init.name.startswith("sedd.") else mapping["initializers"].get(init.name, [])
        holds = [(name[len("sedd."):], tr) for name, tr in holds]
        holds = [(name, tr) for name, tr in holds if name in want and name not in state]
        if not holds:
            continue
        t = torch.from_numpy(np.array(numpy_helper.to_array(init))).float()
        for name, tr in holds:
            fitted = None if name in state else _fit(t, want[name], tr)
            if fitted is not None:
                state[name] = fitted
    for name in mapping["zeros"]:
        if name[len("sedd."):] in want:
            state[name[len("sedd."):]] = torch.zeros(want[name[len("sedd."):]])
    missing = sorted(set(want) - set(state) - {"rotary_emb.inv_freq"})
    if missing:
        raise WeightsError(f"{onnx_path}: no initialiser holds {missing[:3]} in its shape "
                           f"({', '.join(str(list(want[m])) for m in missing[:3])})")
    state.pop("rotary_emb.inv_freq", None)
    return state


def state_dict_from_onnx(model, onnx_path):
    """A state_dict for model (a SEDD) read from the initialisers of onnx_path."""
    proto = onnx.load(onnx_path)
    meta = {p.key: p.value for p in proto.metadata_props}
    if WEIGHTS_KEY in meta:
        return _mapped_state(model, proto, json.loads(meta[WEIGHTS_KEY]), onnx_path)
    named, anonymous = {}, []
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.name.startswith("sedd."):
            named[init.name[len("sedd."):]] = arr
        else:
            anonymous.append((init.name, arr))
    plan = _anonymous_plan(model)
    if len(anonymous) != len(plan):
        raise WeightsError(f"{onnx_path}: {len(anonymous)} unnamed initialisers, expected {len(plan)}")
    state = {}
    for (onnx_name, arr), (name, transpose, shape) in zip(anonymous, plan):
        t = torch.from_numpy(np.array(arr)).float()
        if transpose:
            t = t.t()
        t = t.reshape(-1) if len(shape) == 1 else t
        if tuple(t.shape) != shape:
            raise WeightsError(f"{onnx_path}: initialiser {onnx_name} has shape {list(arr.shape)}, "
                               f"expected {list(shape)} for {name or 'rotary_emb.inv_freq'}")
        if name is not None:
            state[name] = t.contiguous()
    for name, arr in named.items():
        state[name] = torch.from_numpy(np.array(arr)).float()
    want = set(model.state_dict()) - {"rotary_emb.inv_freq"}
    missing, extra = want - set(state), set(state) - want
    if missing or extra:
        raise WeightsError(f"{onnx_path}: missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]}")
    return state


def load_exported(model_dir, check_golden=True, tolerance=None):
    """(SEDD network in float32 eval mode, sedd.json dict) rebuilt from model_dir.

    A random-init export (sedd.json source kind "random-init" with a known shape and seed) is
    rebuilt from its seed instead of read from model.onnx. With check_golden, the first golden case of the directory is recomputed and must agree
    with the stored log_score within the manifest's relative tolerance."""
    with open(os.path.join(model_dir, "sedd.json"), encoding="utf-8") as f:
        man = json.load(f)
    src = man.get("source") or {}
    if src.get("kind") == "random-init" and src.get("shape") in SHAPES and isinstance(src.get("seed"), int):
        # Seeded random weights are rebuilt in-process: identical tensors, without parsing a
        # large model.onnx (which would also inflate the process's peak memory).
        model = load_random(src["shape"], src["seed"], man["graph"],
                            time_independent=bool(man["model"].get("time_independent", False))).model
    else:
        model = SEDD(config_from_manifest(man)).float().eval()
        state = state_dict_from_onnx(model, os.path.join(model_dir, man["onnx"]["file"]))
        model.load_state_dict(state, strict=False)
    if check_golden:
        _, cases = read_golden(model_dir, man["verify"]["golden"])
        # the first case, and the smallest of those with the largest σ: a network rebuilt with
        # the wrong conditioning (time-conditioned for time-independent) agrees at σ near 0 only
        top = max(float(c["sigma"].max()) for c in cases)
        big = min((c for c in cases if float(c["sigma"].max()) == top), key=lambda c: c["indices"].size)
        for case in (cases[0], big):
            with torch.no_grad():
                s, _ = ScoreWithLSE(model)(torch.from_numpy(case["indices"]), torch.from_numpy(case["sigma"]))
            want = torch.from_numpy(case["log_score"]).reshape(s.shape)
            tol = tolerance if tolerance is not None else float(man["verify"].get("tolerance", 1e-4))
            # the contract's measure: max|got - want| / max(1, max|want|)
            err = ((s - want).abs().max() / max(1.0, want.abs().max().item())).item()
            if not err <= tol:
                raise WeightsError(f"{model_dir}: network rebuilt from model.onnx differs from golden case "
                                   f"{case['name']} by {err:.3g} (tolerance {tol:g})")
    return model, man
