"""torch.onnx export of ScoreWithLSE.

model.onnx (see docs/ONNX-CONTRACT.md): inputs indices int64 [batch, length], sigma float32
[batch] and rows int64 [rows] (flat positions b * length + i whose output is wanted); outputs
log_score float32 [rows, N] and log_score_lse float32 [rows]; batch, length and rows are dynamic;
opset 18. The output head runs on the requested rows only (ScoreRowsWithLSE).

The graph comes from torch.onnx's torch.export-based ("dynamo") exporter, the default of current
PyTorch; the TorchScript-based one is deprecated since PyTorch 2.9. Both were measured on the
tiny and sedd-small shapes (export/README.md): the same outputs to the last float32 digits seen,
the same ONNX Runtime speed, 2.5 times fewer nodes here. After the export this module:

- names the dynamic axes "batch" and "length" (torch.export calls them s37, s5, ...);
- removes the exporter's per-node metadata, which holds stack traces with the exporting
  machine's file paths (so model.onnx would differ between checkouts);
- records in the model's metadata which initialiser holds which parameter of the network,
  where the exporter's constant folding renamed it (WEIGHTS_KEY), so that onnx_weights can
  rebuild the PyTorch network from model.onnx alone.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .hashes import file_sha256
from .model import ScoreRowsWithLSE

OPSET = 18
INPUTS = ("indices", "sigma", "rows")
OUTPUTS = ("log_score", "log_score_lse")
# Protobuf cannot serialise a model of 2 GiB or more in one piece.
PROTOBUF_LIMIT = 2 * 1024**3
EXTERNAL_DATA = "model.onnx.data"
# metadata_props key of model.onnx: JSON of weights_map, where the network's parameters are in the
# graph when not under their own names.
WEIGHTS_KEY = "sedd.weights"


def _example(sedd, length=8):
    n = sedd.vocab_size
    gen = torch.Generator().manual_seed(0)
    indices = torch.randint(0, n, (2, length), generator=gen, dtype=torch.int64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float32)
    # neither 0 nor 1 rows (torch.export would specialise the axis), nor every row
    rows = torch.tensor([1, length + 3, 2 * length - 1], dtype=torch.int64)
    return indices, sigma, rows


@contextlib.contextmanager
def _quiet():
    """Silences what torch.onnx prints on stdout and logs while it works (progress lines, missing
    torchvision), so that export.py's own report stays readable."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def torch_export(module, args, input_names, output_names, dynamic, opset=OPSET):
    """The ONNX ModelProto of module(*args) from torch.onnx's dynamo exporter, without the
    exporter's metadata (strip_metadata). dynamic maps each input name to its dynamic axes, which
    are named as given: {"indices": {0: "batch", 1: "length"}}.

    The axes are traced as Dim.DYNAMIC and named afterwards: torch.export assumes a dynamic
    size is not 1 while tracing and refuses a named Dim whose range holds 1; the graph it writes
    is general (the golden cases of length 1 and batch 1 check it)."""
    dyn = torch.export.Dim.DYNAMIC
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module, args, dynamo=True, opset_version=opset, optimize=True, verbose=False,
            input_names=list(input_names), output_names=list(output_names),
            dynamic_shapes={name: {axis: dyn for axis in axes} for name, axes in dynamic.items()},
        )
    proto = program.model_proto
    strip_metadata(proto.graph)
    name_dynamic_axes(proto.graph, dynamic)
    return proto


def name_dynamic_axes(graph, dynamic):
    """Renames the symbols torch.export gave the dynamic axes of graph's inputs (s37, s5, ...) to
    the names in dynamic ({input: {axis: name}}) wherever they appear in graph's inputs, outputs
    and value infos."""
    names = {}
    for v in graph.input:
        for axis, name in dynamic.get(v.name, {}).items():
            names[v.type.tensor_type.shape.dim[axis].dim_param] = name
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]


def strip_metadata(graph):
    """Removes the metadata_props of every node, value info and initialiser of graph."""
    for items in (graph.node, graph.input, graph.output, graph.value_info, graph.initializer):
        for item in items:
            del item.metadata_props[:]


def _digest(arr):
    return arr.dtype.str, arr.size, hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def weights_map(graph, state):
    """Where the parameters of state (name -> tensor) are in graph, for those not held by an
    initialiser of their own name: {"initializers": {initialiser: [[parameter, transposed], ...]},
    "zeros": [parameter, ...]}. An initialiser is listed with every tensor of state whose values
    it holds, as it is, reshaped (a layer norm weight as [1, 1, d]) or transposed (a Linear weight
    folded for MatMul); matched by value, since the exporter's constant folding renames what it
    touches (an untrained network has many equal tensors, hence lists). "zeros" names the
    all-zero parameters the graph holds nowhere: the exporter drops a zero Gemm bias."""
    known = {}
    for name, t in state.items():
        a = t.detach().cpu().numpy()
        known.setdefault(_digest(a), []).append([name, False])
        if a.ndim == 2:
            known.setdefault(_digest(a.T), []).append([name, True])
    mapped = {}
    held = {init.name for init in graph.initializer}
    for init in graph.initializer:
        if init.name.startswith("sedd."):
            continue
        hits = known.get(_digest(numpy_helper.to_array(init)))
        if hits:
            mapped[init.name] = hits
            held.update(name for name, _ in hits)
    zeros = sorted(name for name, t in state.items() if name not in held and not torch.any(t))
    return {"initializers": mapped, "zeros": zeros}


def _empty_inputs(graph):
    return [(n.name, n.op_type) for n in graph.node if any(i == "" for i in n.input)]


def export_onnx(sedd, out_dir, opset=OPSET, file_name="model.onnx"):
    """Exports ScoreRowsWithLSE(sedd) to out_dir/file_name and returns a dict for sedd.json's onnx
    field: file, opset, sha256, size, external_data (list of file names), inputs, outputs,
    nodes (how many the graph has)."""
    module = ScoreRowsWithLSE(sedd.float().eval()).eval()
    path = os.path.join(out_dir, file_name)
    axes = {0: "batch", 1: "length"}
    proto = torch_export(module, _example(sedd), INPUTS, OUTPUTS, {"indices": axes, "sigma": {0: "batch"}, "rows": {0: "rows"}}, opset)
    # ONNX Runtime 1.24-1.30 crash while creating a session for a LayerNormalization with an
    # empty-string input (torch 1.13 wrote those); refuse to write such a graph.
    empty = _empty_inputs(proto.graph)
    if empty:
        raise ValueError(f"torch {torch.__version__} wrote nodes with empty inputs: {empty[:3]}")
    mapped = weights_map(proto.graph, module.state_dict())
    onnx.helper.set_model_props(proto, {WEIGHTS_KEY: json.dumps(mapped, sort_keys=True)})
    proto.producer_name = "sedd-go export"
    proto.producer_version = f"torch {torch.__version__}"
    external = []
    big = _too_big(proto)
    for stale in (path, os.path.join(out_dir, EXTERNAL_DATA)):
        if os.path.exists(stale):
            os.remove(stale)
    if big:
        onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA, size_threshold=1024)
        external = [EXTERNAL_DATA]
        onnx.checker.check_model(path)
    else:
        onnx.checker.check_model(proto, full_check=True)
        onnx.save_model(proto, path)
    return {
        "file": file_name,
        "opset": opset,
        "sha256": file_sha256(path),
        "size": os.path.getsize(path),
        "external_data": external,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "nodes": len(proto.graph.node),
    }


def _too_big(proto):
    """Whether proto cannot be written as one protobuf file (2 GiB or more)."""
    try:
        return proto.ByteSize() >= PROTOBUF_LIMIT
    except Exception:  # noqa: BLE001 - some protobuf builds fail to size messages over 2 GiB
        return True
