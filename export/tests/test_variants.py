"""The faster variants: each fusion alone keeps the golden outputs, int8 quantizes what it says,
tolerances follow their rule, variants.py records and replaces entries, big graphs get data files."""

import json
import os
import shutil
import subprocess
import sys

import onnx
import pytest

from seddpy import golden, ortcheck, variants
from seddpy.golden import TOLERANCE

VARIANTS_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "variants.py")
GRAPHS = ["absorb", "uniform"]


def cases_of(d):
    return golden.read_golden(d)[1]


@pytest.mark.parametrize("graph", GRAPHS)
def test_export_lists_both_variants(exported, graph):
    d, doc, _ = exported[graph]
    assert [v["name"] for v in doc["variants"]] == ["fp32-opt", "int8"]
    for v in doc["variants"]:
        path = os.path.join(d, v["file"])
        assert v["size"] == os.path.getsize(path)
        assert v["sha256"] == ortcheck_sha(path)
        assert v["external_data"] == []
        assert v["max_rel_err"] <= v["tolerance"]
        assert v["made_with"]["onnxruntime"] == ortcheck.VERSION
    opt, q = doc["variants"]
    assert opt["precision"] == "fp32" and opt["tolerance"] == TOLERANCE
    # The attention and GELU patterns of the DDiT graph are the ones the optimizer fuses.
    assert opt["made_with"]["fusions"] == {"MultiHeadAttention": 2, "FastGelu": 2}
    assert q["precision"] == "int8" and q["made_with"]["from"] == "model.opt.onnx"
    assert q["tolerance"] == variants.int8_tolerance(q["max_rel_err"])
    # 2 blocks x (qkv, attention out, 2 MLP) + the output projection
    assert q["made_with"]["quantized_matmuls"] == 9
    assert q["made_with"]["kept_fp32"] == ["sigma embedding and adaLN modulation"]
    qm = onnx.load(os.path.join(d, "model.int8.onnx"))
    assert sum(n.op_type == "MatMulInteger" for n in qm.graph.node) == 9
    # quantize_dynamic rewrites the conditioning path's Gemm nodes as MatMul + Add, float32 still
    floats = {i.name for i in qm.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert sum(n.op_type in ("Gemm", "MatMul") and n.input[1] in floats for n in qm.graph.node) == 5
    with open(os.path.join(d, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert card.count(variants_card_begin()) == 1 and "| int8 | `model.int8.onnx`" in card


def ortcheck_sha(path):
    from seddpy.hashes import file_sha256
    return file_sha256(path)


def variants_card_begin():
    sys.path.insert(0, os.path.dirname(VARIANTS_PY))
    import variants as cli
    return cli.CARD_BEGIN


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("fusion, ops", [("attention", {"MultiHeadAttention": 2}), ("gelu", {"FastGelu": 2}),
                                         ("layer_norm", {})])
def test_each_fusion_alone_keeps_the_golden_outputs(exported, tmp_path, graph, fusion, ops):
    d, doc, _ = exported[graph]
    dst = str(tmp_path / "opt.onnx")
    made = variants.optimize(os.path.join(d, "model.onnx"), dst, doc["model"]["n_heads"], doc["model"]["hidden_size"],
                             fusions=[fusion])
    # layer_norm: the exporter already writes LayerNormalization, so nothing is left to fuse.
    assert made["fusions"] == ops
    report = ortcheck.compare(dst, cases_of(d), tolerance=TOLERANCE)
    assert report["max_rel_err"] < 1e-5 and report["mean_kl"] < 1e-9


def test_unknown_fusion_and_keep_choice_refused(exported, tmp_path):
    d, doc, _ = exported["absorb"]
    with pytest.raises(variants.VariantError, match="unknown fusions"):
        variants.optimize(os.path.join(d, "model.onnx"), str(tmp_path / "x.onnx"), 2, 32, fusions=["flash"])
    with pytest.raises(variants.VariantError, match="choose from"):
        variants.quantize(os.path.join(d, "model.onnx"), str(tmp_path / "x.onnx"), keep_fp32=["embedding"])


def test_int8_keeping_the_output_projection(exported, tmp_path):
    d, doc, _ = exported["absorb"]
    src = os.path.join(d, "model.opt.onnx")
    dst = str(tmp_path / "int8.onnx")
    made = variants.quantize(src, dst, keep_fp32=["output", "conditioning"])
    assert made["quantized"] == 8 and made["kept_fp32"] == ["conditioning", "output"]
    q = onnx.load(dst)
    token, cond = variants.weight_matmuls(onnx.load(src))
    assert len(token) == 9 and len(cond) == 5  # sigma embedding (2) + adaLN of 2 blocks and the output layer
    last = token[-1]
    # The output projection is still a float32 MatMul on a float32 weight.
    node = next(n for n in q.graph.node if n.name == last)
    init = {i.name: i for i in q.graph.initializer}
    assert node.op_type == "MatMul" and init[node.input[1]].data_type == onnx.TensorProto.FLOAT
    assert sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in q.graph.node) == 8
    full = ortcheck.compare(os.path.join(d, "model.int8.onnx"), cases_of(d), tolerance=1)
    kept = ortcheck.compare(dst, cases_of(d), tolerance=1)
    assert kept["max_rel_err"] <= full["max_rel_err"] * 1.5


def test_int8_tolerance_rule():
    assert variants.int8_tolerance(0.042) == pytest.approx(0.2)
    assert variants.int8_tolerance(0.00064) == pytest.approx(0.003)
    assert variants.int8_tolerance(1e-7) == TOLERANCE
    assert variants.int8_tolerance(0.0251) == pytest.approx(0.2)  # 0.1004 rounds up to 0.2
    # one significant digit, written as such in sedd.json (3 * 0.1 is 0.30000000000000004)
    for err, text in [(0.075, "0.3"), (0.0251, "0.2"), (0.0017, "0.007"), (0.21, "0.9"), (0.3, "2.0")]:
        assert repr(variants.int8_tolerance(err)) == text


def test_a_variant_past_its_tolerance_fails_the_build(exported, tmp_path, monkeypatch):
    d, doc, _ = exported["uniform"]
    work = tmp_path / "m"
    shutil.copytree(d, work)
    monkeypatch.setattr(variants, "int8_tolerance", lambda err: err / 10)
    with pytest.raises(variants.VariantError, match="int8"):
        variants.build(str(work), doc, cases_of(str(work)), kinds=["int8"])


def test_big_graphs_get_a_data_file(exported, tmp_path, monkeypatch):
    d, doc, _ = exported["absorb"]
    work = tmp_path / "m"
    shutil.copytree(d, work)
    monkeypatch.setattr(variants, "PROTOBUF_LIMIT", 50_000)
    entries = variants.build(str(work), doc, cases_of(str(work)))
    assert [e["external_data"] for e in entries] == [["model.opt.onnx.data"], ["model.int8.onnx.data"]]
    for e in entries:
        assert os.path.getsize(work / e["external_data"][0]) > e["size"]


def run_cli(*args):
    return subprocess.run([sys.executable, VARIANTS_PY, *args], capture_output=True, text=True, timeout=600)


def test_cli_copies_records_and_replaces(exported, tmp_path):
    d, doc, _ = exported["absorb"]
    src = tmp_path / "src"
    shutil.copytree(d, src)
    for f in ("model.opt.onnx", "model.int8.onnx"):
        os.remove(src / f)
    plain = {k: v for k, v in doc.items() if k != "variants"}
    (src / "sedd.json").write_text(json.dumps(plain), encoding="utf-8")
    before = {f: (src / f).read_bytes() for f in os.listdir(src)}

    out = tmp_path / "out"
    r = run_cli(str(src), "--out", str(out), "--only", "int8")
    assert r.returncode == 0, r.stderr
    assert {f: (src / f).read_bytes() for f in os.listdir(src)} == before  # the source is left alone
    got = json.loads((out / "sedd.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in got["variants"]] == ["int8"]
    assert got["variants"][0]["made_with"]["from"] == "model.onnx"

    r = run_cli(str(out), "--keep-fp32", "output")
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "sedd.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in got["variants"]] == ["fp32-opt", "int8"]
    assert got["variants"][1]["made_with"]["kept_fp32"] == ["output projection"]
    assert got["variants"][1]["made_with"]["quantized_matmuls"] == 8 + 5
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.count("## Variants") == 1 and "output projection" in card


@pytest.mark.parametrize("args, message", [
    (["--only", "fp16"], "unknown variant 'fp16'"),
    (["--keep-fp32", "conditioning,embedding"], "cannot keep 'embedding'"),
])
def test_cli_bad_arguments(exported, args, message):
    d, _, _ = exported["absorb"]
    r = run_cli(d, *args)
    assert r.returncode == 2 and message in r.stderr


def test_cli_refuses_directories_without_a_model(tmp_path):
    r = run_cli(str(tmp_path))
    assert r.returncode == 2 and "no sedd.json" in r.stderr
