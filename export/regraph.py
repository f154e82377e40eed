#!/usr/bin/env python3
"""Write an exported model's graph again with the current exporter, from its own weights.

  .venv/bin/python export/regraph.py models/brown-sedd-small

For a model directory whose training checkpoint is not at hand (the shipped models), when the
contract gains something the graph must compute (docs/ONNX-CONTRACT.md: the rows input). The
network is rebuilt from model.onnx (seddpy/onnx_weights.py, checked against the first golden
case), exported again, and the new model.onnx is kept only if

- every parameter read back from it is bit-identical to the one read from the old file, and
- ONNX Runtime for Python reproduces every golden case within the manifest's tolerance, for
  every position and for some rows only.

sedd.json's onnx and exporter entries are updated; the golden files, the tokenizer and the model
card are left as they are (the function is the same). Faster variants listed in sedd.json are
refused: build them again from the new graph with export/variants.py. Exit status 1 when a
check fails (nothing is changed then), 2 for unusable arguments.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

from seddpy import golden, manifest, onnx_export, ortcheck  # noqa: E402
from seddpy.onnx_weights import WeightsError, load_exported, state_dict_from_onnx  # noqa: E402


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def regraph(model_dir, log=_log):
    """Rewrites model_dir/model.onnx as described above and returns the new sedd.json document.
    Raises WeightsError or ortcheck.MismatchError, leaving the directory alone."""
    with open(os.path.join(model_dir, "sedd.json"), encoding="utf-8") as f:
        man = json.load(f)
    if man.get("variants"):
        raise WeightsError(f"{model_dir}: sedd.json lists variants, which would no longer match; remove them and "
                           "build them again with export/variants.py after this")
    if man["onnx"].get("external_data"):
        raise WeightsError(f"{model_dir}: a model with external data is not handled here; export it from its checkpoint")
    old_path = os.path.join(model_dir, man["onnx"]["file"])
    t = time.time()
    model, _ = load_exported(model_dir)
    old_state = state_dict_from_onnx(model, old_path)
    with tempfile.TemporaryDirectory() as tmp:
        info = onnx_export.export_onnx(model, tmp, file_name=man["onnx"]["file"])
        new_path = os.path.join(tmp, info["file"])
        log(f"{info['file']}: {info['size']:,} bytes, {info['nodes']} nodes, in {time.time() - t:.1f} s")
        new_state = state_dict_from_onnx(model, new_path)
        if set(new_state) != set(old_state):
            raise WeightsError(f"the new graph holds {sorted(set(new_state) ^ set(old_state))[:3]} differently")
        for name, old in old_state.items():
            if not torch.equal(old, new_state[name]):
                raise WeightsError(f"parameter {name} changed in the new graph")
        log(f"weights: all {len(old_state)} parameters bit-identical")
        _, cases = golden.read_golden(model_dir, man["verify"]["golden"])
        tol = float(man["verify"].get("tolerance", golden.TOLERANCE))
        check = ortcheck.compare(new_path, cases, tolerance=tol)
        log(f"ONNX Runtime {check['onnxruntime']}: max relative error {check['max_rel_err']:.3g} "
            f"over {len(cases)} golden cases (tolerance {tol!r})")
        doc = dict(man)
        doc["onnx"] = {k: v for k, v in info.items() if k != "nodes"}
        doc["exporter"] = manifest.exporter_versions()
        doc["verify"] = dict(man["verify"], max_abs_err=check["max_abs_err"])
        shutil.copyfile(new_path, old_path)
    manifest.write_manifest(doc, model_dir)
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="the model directory (sedd.json, model.onnx, golden files)")
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.dir, "sedd.json")):
        print(f"regraph: {args.dir} has no sedd.json", file=sys.stderr)
        return 2
    try:
        regraph(args.dir)
    except (WeightsError, ortcheck.MismatchError) as e:
        print(f"regraph: {e} (nothing was changed)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
