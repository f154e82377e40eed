"""export/regraph.py: a model directory's graph written again from its own weights."""

import hashlib
import json
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.dirname(HERE)
REPO = os.path.dirname(EXPORT)
sys.path.insert(0, EXPORT)

import regraph  # noqa: E402
from seddpy import ortcheck  # noqa: E402
from seddpy.onnx_weights import WeightsError, load_exported  # noqa: E402


def _copy(tmp_path, name):
    """A copy of a committed fixture that load_exported reads from model.onnx (not from its
    seed), as it reads a shipped model."""
    d = tmp_path / name
    shutil.copytree(os.path.join(REPO, "sdk", "testdata", name), d)
    with open(d / "sedd.json", encoding="utf-8") as f:
        doc = json.load(f)
    doc["source"] = {"kind": "training-run", "path": name}
    with open(d / "sedd.json", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return d, doc


def test_regraph_time_independent(tmp_path):
    d, before = _copy(tmp_path, "tiny-absorb-ti")
    model, _ = load_exported(str(d))
    assert model.time_independent  # from sedd.json: the rebuilt network is the exported one
    golden_before = (d / "golden.bin").read_bytes()
    doc = regraph.regraph(str(d), log=lambda _: None)
    raw = (d / "model.onnx").read_bytes()
    assert doc["onnx"]["sha256"] == hashlib.sha256(raw).hexdigest() and doc["onnx"]["size"] == len(raw)
    assert doc["onnx"]["inputs"] == ["indices", "sigma", "rows"]
    assert doc["model"] == before["model"] and doc["verify"]["golden"] == before["verify"]["golden"]
    assert (d / "golden.bin").read_bytes() == golden_before
    with open(d / "sedd.json", encoding="utf-8") as f:
        assert json.load(f) == doc
    sess = ortcheck.session(str(d / "model.onnx"), threads=1)
    assert ortcheck.has_rows(sess)


def test_regraph_refuses_and_changes_nothing(tmp_path):
    d, doc = _copy(tmp_path, "tiny-absorb-ti")
    raw = (d / "model.onnx").read_bytes()
    doc["variants"] = [{"name": "int8"}]
    with open(d / "sedd.json", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    with pytest.raises(WeightsError, match="variants"):
        regraph.regraph(str(d), log=lambda _: None)
    assert (d / "model.onnx").read_bytes() == raw
