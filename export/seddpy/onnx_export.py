"""torch.onnx export of ScoreWithLSE and the clean-up ONNX Runtime needs.

model.onnx (see docs/ONNX-CONTRACT.md): inputs indices int64 [batch, length] and sigma float32
[batch]; outputs log_score float32 [batch, length, N] and log_score_lse float32 [batch, length];
batch and length are dynamic; opset 17.
"""

import hashlib
import inspect
import os
import tempfile
import warnings

import onnx
import torch

from .model import ScoreWithLSE

OPSET = 17
INPUTS = ("indices", "sigma")
OUTPUTS = ("log_score", "log_score_lse")
# Protobuf cannot serialise a model of 2 GiB or more in one piece.
PROTOBUF_LIMIT = 2 * 1024**3
EXTERNAL_DATA = "model.onnx.data"


def strip_empty_trailing_inputs(graph):
    """Removes trailing "" inputs of every node, in graph and its subgraphs; returns how many.

    torch 1.13 writes opset-17 LayerNormalization with an empty-string bias input: onnx.checker
    accepts it, but ONNX Runtime 1.24-1.30 crashes while creating the session."""
    removed = 0
    for node in graph.node:
        while len(node.input) and node.input[-1] == "":
            node.input.pop()
            removed += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                removed += strip_empty_trailing_inputs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    removed += strip_empty_trailing_inputs(g)
    return removed


def _layer_norm_opset17(g, input, normalized_shape, weight, bias, eps, cudnn_enable):
    """aten::layer_norm as opset-17 LayerNormalization with explicit scale and bias constants
    when the call has none (what torch >= 2.0 writes; torch 1.13 leaves them empty, and an empty
    scale is an invalid graph)."""
    from torch.onnx import symbolic_helper

    if symbolic_helper._is_none(weight):
        weight = g.op("Constant", value_t=torch.ones(normalized_shape, dtype=torch.float32))
    if symbolic_helper._is_none(bias):
        bias = g.op("Constant", value_t=torch.zeros(normalized_shape, dtype=torch.float32))
    return g.op("LayerNormalization", input, weight, bias, epsilon_f=eps, axis_i=-len(normalized_shape))


def _patched_layer_norm():
    """Registers _layer_norm_opset17 for torch 1.x (torch 2.x writes the constants itself);
    returns an undo function."""
    if int(torch.__version__.split(".")[0]) >= 2:
        return lambda: None
    from torch.onnx import symbolic_helper

    fn = symbolic_helper.parse_args("v", "is", "v", "v", "f", "none")(_layer_norm_opset17)
    torch.onnx.register_custom_op_symbolic("aten::layer_norm", fn, OPSET)
    return lambda: torch.onnx.unregister_custom_op_symbolic("aten::layer_norm", OPSET)


def _example(sedd, length=8):
    n = sedd.vocab_size
    gen = torch.Generator().manual_seed(0)
    indices = torch.randint(0, n, (2, length), generator=gen, dtype=torch.int64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float32)
    return indices, sigma


def _torch_export(module, args, path, opset):
    kwargs = dict(
        input_names=list(INPUTS),
        output_names=list(OUTPUTS),
        dynamic_axes={
            "indices": {0: "batch", 1: "length"},
            "sigma": {0: "batch"},
            "log_score": {0: "batch", 1: "length"},
            "log_score_lse": {0: "batch", 1: "length"},
        },
        opset_version=opset,
        do_constant_folding=True,
    )
    # torch >= 2.5 can route torch.onnx.export to the dynamo exporter; we want TorchScript's.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    undo = _patched_layer_norm()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, path, **kwargs)
    finally:
        undo()


def file_sha256(path):
    """Lower-case hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(sedd, out_dir, opset=OPSET, file_name="model.onnx"):
    """Exports ScoreWithLSE(sedd) to out_dir/file_name and returns a dict for sedd.json's onnx
    field: file, opset, sha256, size, external_data (list of file names), inputs, outputs,
    stripped_inputs (how many empty inputs were removed)."""
    if opset > OPSET:
        raise ValueError(f"opset {opset} is above {OPSET}, the highest torch 1.13 exports")
    module = ScoreWithLSE(sedd.float().eval()).eval()
    path = os.path.join(out_dir, file_name)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        with torch.no_grad():
            _torch_export(module, _example(sedd), raw, opset)
        # torch writes external data on its own beside raw.onnx when the model is too big;
        # load_external_data pulls it back in so that we decide the layout below.
        proto = onnx.load(raw, load_external_data=True)
    removed = strip_empty_trailing_inputs(proto.graph)
    for node in proto.graph.node:
        if node.op_type == "LayerNormalization" and (len(node.input) < 2 or node.input[1] == ""):
            raise ValueError(f"{node.name}: LayerNormalization without a scale input; this torch "
                             f"({torch.__version__}) needs the layer-norm patch in onnx_export.py")
    proto.producer_name = "sedd-go export"
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
        "stripped_inputs": removed,
    }


def _too_big(proto):
    """Whether proto cannot be written as one protobuf file (2 GiB or more)."""
    try:
        return proto.ByteSize() >= PROTOBUF_LIMIT
    except Exception:  # noqa: BLE001 - some protobuf builds fail to size messages over 2 GiB
        return True
