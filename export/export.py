#!/usr/bin/env python3
"""Export a SEDD checkpoint to a model directory the Go SDK opens (docs/ONNX-CONTRACT.md).

  .venv/bin/python export/export.py --checkpoint DIR --out models/NAME
  .venv/bin/python export/export.py --random-init tiny --graph uniform --seed 2 --out DIR

DIR is a HuggingFace-layout directory (config.json + model.safetensors or pytorch_model.bin,
as louaaron/sedd-small publishes) or a training-run directory (.hydra/config.yaml +
checkpoints-meta/checkpoint.pth; the EMA weights are exported). Writes model.onnx, sedd.json,
tokenizer.json, golden.json, golden.bin and README.md into --out, after running the golden cases
through ONNX Runtime for Python, and the faster variants model.opt.onnx (fused float32) and
model.int8.onnx (int8 weights) checked the same way (--variants none: skip them; see variants.py). Timing and sizes go to stderr. Exit status 2 for bad arguments or
unusable inputs, 1 when ONNX Runtime disagrees with PyTorch.
"""

import argparse
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from seddpy import checkpoints, golden, hashes, manifest, onnx_export, ortcheck, tokenizers, variants  # noqa: E402
import variants as add_variants  # noqa: E402

class UsageError(Exception):
    """Bad command-line arguments (exit status 2)."""


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _mib(n):
    return f"{n / 2**20:.1f} MiB"


def export_model(loaded, out_dir, name, tokenizer=None, golden_length=None, seed=0, log=_log,
                 kinds=variants.KINDS, keep_fp32=variants.KEEP_DEFAULT):
    """Writes the model directory for a checkpoints.Loaded into out_dir and returns the sedd.json
    document. tokenizer is "gpt2", "bytes", a tokenizer.json path or None (see
    tokenizers.resolve); golden_length overrides the trained length used for golden cases;
    kinds are the faster variants to build next to model.onnx (seddpy/variants.py), keep_fp32
    the layers their int8 graph leaves in float32."""
    cfg = loaded.config
    tokens = int(cfg["tokens"])
    kind, tok_doc = tokenizers.resolve(tokenizer, tokens, loaded.tokenizer_path)
    os.makedirs(out_dir, exist_ok=True)

    t = time.time()
    info = onnx_export.export_onnx(loaded.model, out_dir)
    log(f"model.onnx: {_mib(info['size'])} in {time.time() - t:.1f} s "
        f"(torch {manifest.exporter_versions()['torch']}, opset {info['opset']}, {info['nodes']} nodes"
        + (f", external data {info['external_data']}" if info["external_data"] else "") + ")")

    tokenizers.write_tokenizer(tok_doc, os.path.join(out_dir, "tokenizer.json"))

    t = time.time()
    length = int(golden_length or cfg["model"]["length"])
    cases = golden.make_cases(loaded.model, length, seed=seed)
    ginfo = golden.write_golden(cases, out_dir)
    log(f"golden: {ginfo['cases']} cases, golden.bin {_mib(ginfo['size'])} in {time.time() - t:.1f} s")

    t = time.time()
    check = ortcheck.compare(os.path.join(out_dir, info["file"]), cases)
    log(f"ONNX Runtime {check['onnxruntime']}: max |ONNX - PyTorch| {check['max_abs_err']:.2g} "
        f"({check['max_rel_err']:.2g} relative to max(1, max|PyTorch|)) over {len(cases)} cases in {time.time() - t:.1f} s")

    doc = manifest.build_manifest(name, cfg, loaded.model, kind, tok_doc, info, loaded.source, ginfo, check=check,
                                  tokenizer_sha256=hashes.file_sha256(os.path.join(out_dir, "tokenizer.json")))
    if kinds:
        doc["variants"] = variants.build(out_dir, doc, cases, kinds=kinds, keep_fp32=keep_fp32, log=log)
    manifest.write_manifest(doc, out_dir)
    card = model_card(doc, cfg)
    if doc.get("variants"):
        card = card.rstrip("\n") + "\n\n" + add_variants.card_section(doc["variants"]) + "\n"
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)
    return doc


def _data_line(cfg, source):
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    if source["kind"] == "random-init":
        return "none: the weights are random (seed {}), for tests of the export and the SDK only.".format(source.get("seed"))
    if data.get("train"):
        valid = f"; validation: {data['valid']}" if data.get("valid") else ""
        return f"training: {data['train']}{valid} (from the checkpoint's config)."
    return "not recorded in the checkpoint."


def _licence_line(source):
    if source["kind"] == "random-init":
        return "the same as this repository's code (random weights carry no third-party rights)."
    if source["kind"] == "huggingface":
        return ("that of the source checkpoint (see its model card). The reference SEDD code that "
                "defines the network is MIT-licensed; the GPT-2 tokenizer files are OpenAI's, MIT-licensed.")
    return "that of the training run's data and code; not recorded in the checkpoint."


def _err_text(doc):
    err = (doc.get("verify") or {}).get("max_abs_err")
    if err is None:
        return "not measured at export"
    return f"{err:.2g} with ONNX Runtime {doc['exporter']['onnxruntime']} for Python, at export"


def model_card(doc, cfg):
    """README.md of a model directory: what the export is, from what, and what is not measured."""
    src = doc["source"]
    m = doc["model"]
    noise = doc["noise"]
    noise_text = (f"log-linear, eps {noise['eps']:g}" if noise["type"] == "loglinear"
                  else f"geometric, sigma_min {noise['sigma_min']:g}, sigma_max {noise['sigma_max']:g}")
    step = f", step {src['step']}" if src.get("step") is not None else ""
    where = f" `{src['path']}`" if src.get("path") else ""
    lines = [
        f"# {doc['name']}",
        "",
        "A SEDD (Score Entropy Discrete Diffusion) score network exported to ONNX for the sedd-go runtime.",
        "",
        "| | |",
        "|---|---|",
        f"| source | {src['kind']}{where}{step} |",
        f"| graph | {doc['graph']} (N = {doc['tokens'] + (1 if doc['graph'] == 'absorb' else 0)} outputs per position) |",
        f"| noise | {noise_text} |",
        f"| tokens | {doc['tokens']} ({doc['tokenizer']['kind']} tokenizer) |",
        f"| trained length | {doc['length']} |",
        f"| network | DDiT, hidden {m['hidden_size']}, {m['n_blocks']} blocks, {m['n_heads']} heads, cond {m['cond_dim']}, "
        f"scale_by_sigma {m['scale_by_sigma']}{', time-independent' if m.get('time_independent') else ''} |",
        f"| parameters | {m['params']:,} |",
        f"| model.onnx | {doc['onnx']['size']:,} bytes, opset {doc['onnx']['opset']}, sha256 `{doc['onnx']['sha256']}` |",
        f"| written by | torch {doc['exporter']['torch']} ({doc['exporter']['torch_onnx_exporter']} exporter), onnx {doc['exporter']['onnx']} |",
        "",
        f"Data: {_data_line(cfg, src)}",
        "",
        f"Licence: {_licence_line(src)}",
        "",
        "## Quality",
        "",
        "- Perplexity bound: not measured.",
        "- Generative perplexity: not measured.",
        f"- max |ONNX − PyTorch| on the golden cases: {_err_text(doc)}; `sedd verify` on this directory "
        "measures it again with the Go SDK's ONNX Runtime.",
        "",
        "## Files",
        "",
        "`model.onnx` (score network), `sedd.json` (manifest), `tokenizer.json`, `golden.json` + "
        "`golden.bin` (PyTorch outputs for `sedd verify`), this README.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="HuggingFace-layout or training-run directory")
    src.add_argument("--random-init", choices=sorted(checkpoints.SHAPES), help="random weights of a named shape")
    ap.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    ap.add_argument("--graph", choices=["absorb", "uniform"], help="graph of --random-init (default absorb)")
    ap.add_argument("--time-independent", action="store_true",
                    help="--random-init: a network whose time input is held at 0 (model.time_independent); "
                         "a checkpoint's comes from its config")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and golden inputs (default 0)")
    ap.add_argument("--tokenizer", metavar="gpt2|bytes|PATH",
                    help="tokenizer (default: the checkpoint's tokenizer.json, else bytes for 256 tokens, gpt2 for 50257)")
    ap.add_argument("--name", help="model name in sedd.json (default: from the source)")
    ap.add_argument("--length", type=int, metavar="N", help="trained length for the golden cases (default: the config's)")
    ap.add_argument("--weights", choices=["ema", "model"], default="ema",
                    help="training-run directories: EMA weights (default) or the raw model weights")
    ap.add_argument("--variants", type=add_variants.parse_kinds, default=list(variants.KINDS), metavar="LIST",
                    help="faster graphs to build next to model.onnx: fp32-opt,int8 (default), or none")
    ap.add_argument("--keep-fp32", type=add_variants.parse_keep, default=list(variants.KEEP_DEFAULT), metavar="LIST",
                    help="int8 variant: layers to leave in float32: conditioning (default), output, both, or none")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="let .pth/.bin checkpoints unpickle arbitrary objects (only for files you trust)")
    args = ap.parse_args(argv)
    if args.checkpoint and args.graph:
        ap.error("--graph applies to --random-init only; a checkpoint's graph comes from its config")
    if args.checkpoint and args.time_independent:
        ap.error("--time-independent applies to --random-init only; a checkpoint's comes from its config "
                 "(model.time_independent)")
    if args.time_independent and args.graph == "uniform":
        ap.error("--time-independent needs the absorb graph")
    if args.length is not None and args.length <= 0:
        ap.error("--length must be > 0")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        ap.error(f"--out {args.out} exists and is not a directory")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    try:
        if args.random_init:
            loaded = checkpoints.load_random(args.random_init, args.seed, args.graph or "absorb",
                                             time_independent=args.time_independent)
            name = args.name or f"{args.random_init}-{args.graph or 'absorb'}-random"
        else:
            loaded = checkpoints.load_checkpoint(args.checkpoint, use_ema=args.weights == "ema",
                                                 trust_pickle=args.trust_pickle)
            name = args.name or os.path.basename(os.path.normpath(args.checkpoint))
        _log(f"loaded {loaded.source['kind']} in {time.time() - start:.1f} s: "
             f"{checkpoints.count_params(loaded.model):,} parameters")
        export_model(loaded, args.out, name, tokenizer=args.tokenizer, golden_length=args.length, seed=args.seed,
                     kinds=args.variants, keep_fp32=args.keep_fp32)
    except (checkpoints.CheckpointError, tokenizers.TokenizerError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    except (ortcheck.MismatchError, variants.VariantError) as e:
        print(f"export: {e} (what was written so far is left in {args.out})", file=sys.stderr)
        return 1
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out)
                if os.path.isfile(os.path.join(args.out, f)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _log(f"wrote {args.out}: {_mib(total)} in {time.time() - start:.1f} s, peak RSS {_mib(peak)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
