"""Faster graphs of an exported score network, made with ONNX Runtime's own Python tools and
listed in sedd.json under "variants" (docs/ONNX-CONTRACT.md). model.onnx stays the reference:
every variant is checked against its golden outputs (PyTorch, float32) before it is listed.

- "fp32-opt", model.opt.onnx: onnxruntime.transformers.optimizer with the fusions of its
  diffusion-transformer model type ("mmdit"): MultiHeadAttention from the DiT attention pattern
  (softmax(Q K^T * scale) V after the rotary embedding), FastGelu from the tanh GELU, and
  LayerNormalization where the graph spells it out. Run at opt_level 0: only these fusions are
  written into the file; ONNX Runtime's own session-time optimizations still run when the SDK
  loads it, on the CPU it runs on, so the file is as portable as model.onnx. Same precision as
  model.onnx, so it is held to the export's tolerance.
- "int8", model.int8.onnx: onnxruntime.quantization.quantize_dynamic of the fp32-opt graph
  (of model.onnx when fp32-opt is not built): every MatMul with a constant weight on the token
  path gets int8 weights (7 bits used, reduce_range) with one scale per output channel, its
  input is quantized to uint8 per tensor at run time. The layers named in keep_fp32 stay float32: by default the conditioning
  path (sigma embedding and adaLN modulation: [batch, cond] rows, a negligible share of the
  work, so quantizing it buys no time), optionally also "output" (the final projection to the N
  log-scores, the largest single weight). Its tolerance is INT8_MARGIN times its own measured
  error, see int8_tolerance.

Both tools need onnxruntime for Python (export/requirements.txt); the SDK needs none of this.
"""

import collections
import contextlib
import io
import logging
import math
import os
import time

import onnx

from . import ortcheck
from .golden import TOLERANCE
from .hashes import file_sha256

OPT_FILE = "model.opt.onnx"
INT8_FILE = "model.int8.onnx"
KINDS = ("fp32-opt", "int8")
OPTIMIZER_MODEL_TYPE = "mmdit"
# The fusions of OPTIMIZER_MODEL_TYPE, by FusionOptions flag, with the operators each writes.
FUSIONS = {"attention": ("MultiHeadAttention",), "gelu": ("FastGelu", "Gelu"),
           "layer_norm": ("LayerNormalization", "SimplifiedLayerNormalization")}
# Layers that can be kept in float32 in the int8 variant: the conditioning path (sigma embedding
# and adaLN modulation, computed once per sequence from sigma: a negligible share of the work)
# and the output projection (the largest single weight, straight into the log-scores).
KEEP_CHOICES = ("conditioning", "output")
KEEP_DEFAULT = ("conditioning",)
KEEP_NAMES = {"conditioning": "sigma embedding and adaLN modulation", "output": "output projection"}
# The int8 tolerance is this many times the measured error, and never below the float32 one.
INT8_MARGIN = 4
# A file past 2 GiB cannot be one protobuf: its weights go to a data file beside it.
PROTOBUF_LIMIT = 2**31 - 1


class VariantError(Exception):
    """A variant that could not be built or does not reproduce the golden outputs."""


def _quiet():
    """Silences the tools' progress bars and INFO logging (they write to stdout and stderr)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    for name in ("onnxruntime", "fusion_base", "onnx_model", "onnx_model_bert", "onnx_model_mmdit", "root"):
        lg = logging.getLogger(name)
        old = lg.level
        lg.setLevel(logging.ERROR)
        stack.callback(lg.setLevel, old)
    return stack


def op_counts(path):
    """How many nodes of each operator type the graph at path has (weights not loaded)."""
    m = onnx.load(path, load_external_data=False)
    return collections.Counter(n.op_type for n in m.graph.node)


def _save(model, path):
    """Writes an onnx.ModelProto, its weights in path + ".data" when it would pass 2 GiB.
    Returns the list of external data file names (empty for one file)."""
    for f in (path, path + ".data"):
        if os.path.exists(f):
            os.remove(f)
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save_model(model, path)
        return []
    name = os.path.basename(path) + ".data"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=name, size_threshold=1024)
    return [name]


def optimize(src, dst, n_heads, hidden_size, fusions=None):
    """Writes the fp32-opt graph of src to dst. fusions: the FUSIONS keys to apply (default all).
    Returns {"fusions": {operator: nodes added}, "external_data": [...]}."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    opts = FusionOptions(OPTIMIZER_MODEL_TYPE)
    chosen = set(FUSIONS if fusions is None else fusions)
    unknown = chosen - set(FUSIONS)
    if unknown:
        raise VariantError(f"unknown fusions {sorted(unknown)}; choose from {sorted(FUSIONS)}")
    for flag in FUSIONS:
        setattr(opts, "enable_" + flag, flag in chosen)
    before = op_counts(src)
    with _quiet():
        model = optimizer.optimize_model(src, model_type=OPTIMIZER_MODEL_TYPE, num_heads=n_heads,
                                         hidden_size=hidden_size, optimization_options=opts, opt_level=0)
    proto = model.model
    # The optimizer writes com.microsoft operators (FastGelu, MultiHeadAttention) but leaves the
    # domain out of opset_import when the graph's default domain is spelled "" implicitly.
    if any(n.domain == "com.microsoft" for n in proto.graph.node) and \
            not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    after = collections.Counter(n.op_type for n in proto.graph.node)
    added = {op: after[op] - before[op] for flag in sorted(chosen) for op in FUSIONS[flag]
             if after[op] > before[op]}
    external = _save(proto, dst)
    return {"fusions": added, "external_data": external}


def _token_path(model, token_input="indices"):
    """The names of the tensors computed from the token input (not from sigma alone)."""
    reached = {token_input}
    for n in model.graph.node:  # topologically sorted
        if any(i in reached for i in n.input):
            reached.update(n.output)
    return reached


def weight_matmuls(model):
    """The MatMul and Gemm nodes with a constant weight, in graph order, as two lists of names:
    those on the token path (the graph is topologically sorted, so the last one is the output
    projection) and those of the conditioning path (computed from sigma only: the sigma
    embedding and every adaLN modulation)."""
    init = {i.name for i in model.graph.initializer}
    consts = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    reached = _token_path(model)
    token, cond = [], []
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm") and (n.input[1] in init or n.input[1] in consts):
            (token if n.input[0] in reached else cond).append(n.name)
    return token, cond


def quantize(src, dst, keep_fp32=KEEP_DEFAULT):
    """Writes the int8 graph of src to dst (see the module doc). keep_fp32: KEEP_CHOICES to leave
    in float32. Returns {"quantized": weight MatMuls made int8, "kept_fp32": [...],
    "external_data": [...]}."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bad = set(keep_fp32) - set(KEEP_CHOICES)
    if bad:
        raise VariantError(f"cannot keep {sorted(bad)} in float32; choose from {list(KEEP_CHOICES)}")
    model = onnx.load(src, load_external_data=False)
    token, cond = weight_matmuls(model)
    if not token:
        raise VariantError(f"{src}: no MatMul with a constant weight on the token path to quantize")
    quantized = list(token)
    exclude = []
    if "output" in keep_fp32:
        exclude.append(quantized.pop())
    if "conditioning" in keep_fp32:
        # quantize_dynamic turns each Gemm into a MatMul named NAME_MatMul before quantizing.
        exclude += cond + [c + "_MatMul" for c in cond]
    else:
        quantized += cond
    del model
    big = os.path.getsize(src) + sum(os.path.getsize(os.path.join(os.path.dirname(src), f))
                                     for f in _external_files(src)) >= PROTOBUF_LIMIT
    for f in (dst, dst + ".data"):
        if os.path.exists(f):
            os.remove(f)
    with _quiet():
        # reduce_range: 7-bit weights. Without it the AVX2 kernels (no VNNI) saturate their 16-bit
        # pair sums (uint8 x int8 + uint8 x int8 > 32767): on the shipped model the int8 graph's
        # error was 0.049 with AVX-512 VNNI and 0.191 with AVX2 (qemu -cpu Haswell); with it both
        # kernels give 0.045, so one tolerance holds on both.
        quantize_dynamic(src, dst, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude,
                         use_external_data_format=big,
                         # The fused graph has com.microsoft operators that ONNX's shape
                         # inference does not know; their outputs are float32.
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    external = _external_files(dst)
    return {"quantized": len(quantized), "kept_fp32": [k for k in KEEP_CHOICES if k in keep_fp32],
            "external_data": external}


def _external_files(path):
    """The external data files a saved model refers to."""
    m = onnx.load(path, load_external_data=False)
    names = set()
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    names.add(e.value)
    return sorted(names)


def int8_tolerance(max_rel_err):
    """The int8 variant's verify tolerance: INT8_MARGIN times the error measured at export,
    rounded up to one significant digit, never below the float32 TOLERANCE. The margin covers
    what differs between machines: dynamic quantization picks its scales from the activations,
    so a last-bit change of the float32 part upstream (which kernels round differently per CPU)
    can move a value to the next quantization step. (With 7-bit weights the int8 products
    themselves agree between AVX-512 VNNI and AVX2: measured the same error on both.) A broken
    or swapped int8 file is off by orders of magnitude more."""
    t = max(TOLERANCE, INT8_MARGIN * max_rel_err)
    digits = math.floor(math.log10(t))
    # through its decimal text, so that sedd.json holds 0.3 rather than 3 * 0.1 =
    # 0.30000000000000004 (the nearest double to one significant digit)
    return float(f"{math.ceil(t / 10**digits)}e{digits}")


def describe_tolerance(kind, max_rel_err, tolerance):
    if kind != "int8":
        return (f"the export's float32 tolerance: the fusions change only the order of float32 "
                f"operations (measured {max_rel_err:.2g})")
    return (f"{INT8_MARGIN}x the max relative error measured at export ({max_rel_err:.2g}), rounded up: "
            "the run-time activation scales move with the float32 rounding of each CPU")


def build(out_dir, doc, cases, kinds=KINDS, keep_fp32=KEEP_DEFAULT, log=print):
    """Builds the variants `kinds` of the export in out_dir (doc: its sedd.json document, cases:
    its golden cases), checks each against the golden outputs and returns their sedd.json
    entries. Raises VariantError when a variant does not reproduce them within its tolerance."""
    bad = set(kinds) - set(KINDS)
    if bad:
        raise VariantError(f"unknown variants {sorted(bad)}; choose from {list(KINDS)}")
    base = os.path.join(out_dir, doc["onnx"]["file"])
    m = doc["model"]
    entries = []
    src = base
    for kind in KINDS:
        if kind not in kinds:
            continue
        t = time.time()
        if kind == "fp32-opt":
            path = os.path.join(out_dir, OPT_FILE)
            made = optimize(base, path, m["n_heads"], m["hidden_size"])
            how = {"tool": "onnxruntime.transformers.optimizer", "model_type": OPTIMIZER_MODEL_TYPE,
                   "opt_level": 0, "fusions": made["fusions"]}
        else:
            path = os.path.join(out_dir, INT8_FILE)
            made = quantize(src, path, keep_fp32)
            how = {"tool": "onnxruntime.quantization.quantize_dynamic", "from": os.path.basename(src),
                   "weights": "int8 (7-bit range), per output channel", "activations": "uint8, per tensor, at run time",
                   "quantized_matmuls": made["quantized"],
                   "kept_fp32": [KEEP_NAMES[k] for k in made["kept_fp32"]]}
        built = time.time() - t
        try:
            loose = ortcheck.compare(path, cases, tolerance=float("inf"))
        except ortcheck.MismatchError as e:
            raise VariantError(f"{kind}: {e}") from None
        tol = TOLERANCE if kind == "fp32-opt" else int8_tolerance(loose["max_rel_err"])
        if loose["max_rel_err"] > tol:
            raise VariantError(f"{kind} ({os.path.basename(path)}) differs from the golden outputs by "
                               f"{loose['max_rel_err']:.3g} relative, past the float32 tolerance {tol:g}: "
                               "a fusion changed the maths; build without it")
        entry = {
            "name": kind,
            "precision": "int8" if kind == "int8" else "fp32",
            "file": os.path.basename(path),
            "sha256": file_sha256(path),
            "size": os.path.getsize(path),
            "external_data": made["external_data"],
            "made_with": dict(how, onnxruntime=ortcheck.VERSION),
            "tolerance": tol,
            "tolerance_basis": describe_tolerance(kind, loose["max_rel_err"], tol),
            "max_abs_err": loose["max_abs_err"],
            "max_rel_err": loose["max_rel_err"],
            "mean_kl": loose["mean_kl"],
            "max_kl": loose["max_kl"],
        }
        entries.append(entry)
        log(f"{kind}: {entry['file']} {entry['size'] / 2**20:.1f} MiB in {built:.1f} s; golden max rel err "
            f"{entry['max_rel_err']:.2g} (tolerance {tol:g}), mean KL {entry['mean_kl']:.2g} nats/position")
        if kind == "fp32-opt":
            src = path
    return entries
