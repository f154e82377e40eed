#!/usr/bin/env python3
"""Add the faster variants (fp32-opt, int8) to an exported model directory.

  .venv/bin/python export/variants.py out/sedd-small                 # in place
  .venv/bin/python export/variants.py models/brown-sedd-small --out out/brown-sedd-small
  .venv/bin/python export/variants.py DIR --only int8 --keep-fp32 conditioning,output

export.py builds them already; this is for directories exported before, or written by other
tools (the shipped models), and for trying what to keep in float32. The directory must have its
golden files: each variant is checked against them with ONNX Runtime for Python and listed in
sedd.json with its file, sha256, precision, tolerance and measured error (seddpy/variants.py
says how each is made). With --out the directory is copied first and the source is left alone.
Exit status 2 for bad arguments, 1 when a variant does not reproduce the golden outputs.
"""

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from seddpy import golden, manifest, variants  # noqa: E402

CARD_BEGIN = "<!-- variants: written by export/variants.py -->"
CARD_END = "<!-- end of variants -->"


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def read_doc(d):
    with open(os.path.join(d, "sedd.json"), encoding="utf-8") as f:
        return json.load(f)


def copy_model(src, dst, doc):
    """Copies the files sedd.json names (and README.md) from src to dst."""
    os.makedirs(dst, exist_ok=True)
    names = {"sedd.json", "README.md", doc["tokenizer"]["file"], doc["onnx"]["file"], *doc["onnx"].get("external_data", [])}
    if doc.get("verify"):
        names |= {doc["verify"]["golden"], doc["verify"]["data"]}
    for v in doc.get("variants", []):
        names |= {v["file"], *v.get("external_data", [])}
    for n in sorted(names):
        if os.path.exists(os.path.join(src, n)):
            shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))


def card_section(entries):
    """The README.md section that lists the variants."""
    lines = [CARD_BEGIN, "## Variants", "",
             "Faster graphs of the same network (`sedd info` shows which one the SDK runs by default; "
             "`--precision` chooses). Each was checked against the golden outputs at export.", "",
             "| variant | file | size | max rel. error vs PyTorch | mean KL per position | verify tolerance | made with |",
             "|---|---|---|---|---|---|---|"]
    for e in entries:
        how = e["made_with"]
        what = (", ".join(f"{op} ×{n}" for op, n in how["fusions"].items()) or "no fusion applied") \
            if e["name"] == "fp32-opt" else (f"{how['quantized_matmuls']} MatMuls int8; float32: " + (", ".join(how["kept_fp32"]) or "none"))
        lines.append(f"| {e['name']} | `{e['file']}` | {e['size'] / 2**20:.1f} MiB | {e['max_rel_err']:.2g} | "
                     f"{e['mean_kl']:.2g} nats | {e['tolerance']:g} | {what} (ONNX Runtime {how['onnxruntime']}) |")
    lines += ["", CARD_END]
    return "\n".join(lines)


def update_card(d, entries):
    path = os.path.join(d, "README.md")
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    if CARD_BEGIN in text and CARD_END in text:
        head, rest = text.split(CARD_BEGIN, 1)
        tail = rest.split(CARD_END, 1)[1]
        text = head + card_section(entries) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + card_section(entries) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def add_variants(d, kinds=variants.KINDS, keep_fp32=variants.KEEP_DEFAULT, log=_log):
    """Builds the variants of the model directory d and records them in its sedd.json and
    README.md; returns the new sedd.json document."""
    doc = read_doc(d)
    if doc.get("kind", "sedd") != "sedd":
        raise variants.VariantError(f"{d}: a {doc.get('kind')!r} model; variants are made for SEDD score networks")
    if not doc.get("verify"):
        raise variants.VariantError(f"{d}: sedd.json has no golden files to check variants against")
    _, cases = golden.read_golden(d, doc["verify"]["golden"])
    entries = variants.build(d, doc, cases, kinds=kinds, keep_fp32=keep_fp32, log=log)
    kept = [v for v in doc.get("variants", []) if v["name"] not in {e["name"] for e in entries}]
    doc["variants"] = sorted(kept + entries, key=lambda v: variants.KINDS.index(v["name"]))
    manifest.write_manifest(doc, d)
    update_card(d, doc["variants"])
    return doc


def _parse_list(text, choices, complaint):
    """A comma-separated list of choices, or [] for "none"."""
    if text == "none":
        return []
    items = [k for k in text.split(",") if k]
    bad = [k for k in items if k not in choices]
    if bad:
        raise argparse.ArgumentTypeError(f"{complaint.format(repr(bad[0]))}; choose from {','.join(choices)}")
    return items


def parse_kinds(text):
    return _parse_list(text, variants.KINDS, "unknown variant {}")


def parse_keep(text):
    return _parse_list(text, variants.KEEP_CHOICES, "cannot keep {} in float32")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="exported model directory (sedd.json, model.onnx, golden files)")
    ap.add_argument("--out", metavar="DIR", help="copy the directory here first and add the variants to the copy")
    ap.add_argument("--only", type=parse_kinds, default=list(variants.KINDS), metavar="LIST",
                    help="variants to build (default fp32-opt,int8)")
    ap.add_argument("--keep-fp32", type=parse_keep, default=list(variants.KEEP_DEFAULT), metavar="LIST",
                    help="int8: layers to leave in float32: conditioning (default), output, both, or none")
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.dir, "sedd.json")):
        ap.error(f"{args.dir}: no sedd.json (not an exported model directory)")
    d = args.dir
    t = time.time()
    try:
        if args.out:
            if os.path.abspath(args.out) == os.path.abspath(args.dir):
                ap.error("--out is the source directory; leave --out off to add the variants in place")
            copy_model(args.dir, args.out, read_doc(args.dir))
            d = args.out
        add_variants(d, args.only, args.keep_fp32)
    except variants.VariantError as e:
        print(f"variants: {e}", file=sys.stderr)
        return 1
    _log(f"variants of {d} in {time.time() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
