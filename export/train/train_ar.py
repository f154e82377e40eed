"""The autoregressive twin: a small causal transformer on the same tokens and blocks as the
SEDD model, its exact test perplexity, and its ONNX export (ONNX-CONTRACT.md, evaluator models).

Network: token embedding, pre-LN blocks (LayerNorm → causal multi-head attention with rotary
positions → residual; LayerNorm → GELU MLP → residual), final LayerNorm, output layer tied to the
embedding. The shipped weights are rounded to float16 (stored as float16 initializers in model.onnx
and cast to float32 inside the graph, halving the file); the test perplexity is measured with
exactly those rounded weights.

Usage:
  .venv/bin/python export/train/train_ar.py train  --run runs/brown-ar-small --minutes 18
  .venv/bin/python export/train/train_ar.py eval   --run runs/brown-ar-small          # exact test perplexity
  .venv/bin/python export/train/train_ar.py export --run runs/brown-ar-small --out models/brown-sedd-small-ar
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import common  # noqa: F401  (puts export/ on sys.path)
from common import EMA, Log, RandomBlocks, fixed_blocks, load_ids, lr_at
from seddpy.model import Rotary, apply_rotary
from seddpy.manifest import exporter_versions
from seddpy.onnx_export import OPSET, torch_export


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x, cos, sin, causal):
        b, s, d = x.shape
        hd = d // self.heads
        qkv = self.qkv(self.ln1(x)).reshape(b, s, 3, self.heads, hd)
        q = apply_rotary(qkv[:, :, 0], cos, sin).transpose(1, 2)
        k = apply_rotary(qkv[:, :, 1], cos, sin).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(causal, float("-inf")).softmax(dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class CausalLM(nn.Module):
    """input_ids [batch, length] int64 → next-token logits [batch, length, vocab] float32."""

    def __init__(self, vocab, dim, n_blocks, heads):
        super().__init__()
        self.config = {"vocab": vocab, "hidden_size": dim, "n_blocks": n_blocks, "n_heads": heads}
        self.embed = nn.Embedding(vocab, dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.rotary = Rotary(dim // heads)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(n_blocks)])
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied, as GPT-2: keeps the shipped file small
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_blocks))

    def forward(self, input_ids):
        x = self.embed(input_ids)
        cos, sin = self.rotary(x)
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        causal = pos[None, :] > pos[:, None]  # True above the diagonal: future positions
        for blk in self.blocks:
            x = blk(x, cos, sin, causal)
        return self.head(self.ln_f(x))


def nll_sum(model, x):
    """Summed next-token negative log-likelihood over positions 1..L-1 of each block."""
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")


def load_run(run, fp16=True):
    """The run's EMA weights, rounded to float16 (the shipped precision) unless fp16 is False."""
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    model = CausalLM(cfg["vocab"], cfg["hidden_size"], cfg["n_blocks"], cfg["n_heads"])
    ck = torch.load(os.path.join(run, "checkpoint.pth"), map_location="cpu")
    model.load_state_dict(ck["model"])
    EMA_params = ck["ema"]["shadow_params"]
    with torch.no_grad():
        for p, s in zip(model.parameters(), EMA_params):
            p.copy_(s.half().float() if fp16 else s)
    model.eval()
    return model, cfg, ck


@torch.no_grad()
def perplexity(model, blocks, batch=32):
    """Exact perplexity: every block scored from its first token, predicting tokens 2..L."""
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch):
        x = blocks[i : i + batch]
        total += nll_sum(model, x).item()
        count += x[:, 1:].numel()
    return math.exp(total / count), total / count, count


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_ids = load_ids(args.data, "train")
    vocab = int(train_ids.max()) + 1
    model = CausalLM(vocab, args.hidden, args.blocks, args.heads)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = RandomBlocks(train_ids, args.length + 1, args.batch, args.seed)
    if args.bench:
        for i in range(args.bench + 2):
            if i == 2:
                t0 = time.time()
            loss = nll_sum(model, data.next()) / (args.batch * args.length)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        dt = (time.time() - t0) / args.bench
        print(f"params {n_params}: {dt:.3f} s/step, {args.batch * args.length / dt:.0f} tokens/s")
        return
    os.makedirs(args.run, exist_ok=True)
    cfg = {"vocab": vocab, "hidden_size": args.hidden, "n_blocks": args.blocks, "n_heads": args.heads,
           "length": args.length, "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "ema": args.ema,
           "minutes": args.minutes, "seed": args.seed, "params": n_params,
           "optimizer": "AdamW betas (0.9, 0.95) weight decay 0.1, grad clip 1, cosine to 0.1 lr"}
    with open(os.path.join(args.run, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    shutil.copyfile(os.path.join(args.data, "tokenizer.json"), os.path.join(args.run, "tokenizer.json"))
    log = Log(os.path.join(args.run, "train.log"))
    log(f"params {n_params} config {cfg}")
    valid = fixed_blocks(load_ids(args.data, "valid"), args.length)[:64]
    ema = EMA(model.parameters(), args.ema)
    t_start = time.time()
    step, run_loss, run_n = 0, 0.0, 0

    def save():
        path = os.path.join(args.run, "checkpoint.pth")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                    "step": step}, path + ".tmp")
        os.replace(path + ".tmp", path)

    while True:
        step += 1
        progress = (time.time() - t_start) / (args.minutes * 60)
        last = progress >= 1.0
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1, progress, args.lr, args.warmup)
        loss = nll_sum(model, data.next()) / (args.batch * args.length)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model.parameters())
        run_loss += loss.item()
        run_n += 1
        if step % args.log_every == 0 or last:
            log(f"step {step} loss {run_loss / run_n:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"elapsed {(time.time() - t_start) / 60:.1f} min tokens {step * args.batch * args.length}")
            run_loss, run_n = 0.0, 0
        if step % args.eval_every == 0 or last:
            model.eval()
            raw = perplexity(model, valid)[0]
            saved = [p.detach().clone() for p in model.parameters()]
            ema.copy_to(model.parameters())
            ppl = perplexity(model, valid)[0]
            with torch.no_grad():
                for p, s in zip(model.parameters(), saved):
                    p.copy_(s)
            model.train()
            log(f"step {step} valid ppl raw {raw:.2f} ema {ppl:.2f}")
            save()
        if last:
            break
    log(f"done: {step} steps, {step * args.batch * args.length} tokens, {(time.time() - t_start) / 60:.1f} min")


def cmd_eval(args):
    torch.set_num_threads(args.threads)
    model, cfg, ck = load_run(args.run)
    test = fixed_blocks(load_ids(args.data, "test"), cfg["length"])
    ppl, nll, count = perplexity(model, test)
    res = {"split": "test", "blocks": len(test), "length": cfg["length"], "predicted_tokens": count,
           "nll_per_token": nll, "perplexity": ppl, "step": ck["step"], "weights": "ema"}
    print(json.dumps(res, indent=1))
    with open(os.path.join(args.run, "test_eval.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)


def initializers_to_fp16(model_proto, min_elems=1024):
    """Stores large float32 initializers as float16 plus a Cast back to float32 at the top of
    the graph. The weights were already rounded to float16 in PyTorch, so nothing changes."""
    from onnx import TensorProto, helper, numpy_helper

    g = model_proto.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type == TensorProto.FLOAT and arr.size >= min_elems:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name="cast_" + init.name))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)


def cmd_export(args):
    import onnx

    torch.set_num_threads(args.threads)
    model, cfg, ck = load_run(args.run)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    dummy = torch.randint(0, cfg["vocab"], (2, 16))
    m = torch_export(model, (dummy,), ["input_ids"], ["logits"], {"input_ids": {0: "batch", 1: "length"}})
    initializers_to_fp16(m)
    onnx.checker.check_model(m)
    onnx.save(m, onnx_path)
    shutil.copyfile(os.path.join(args.run, "tokenizer.json"), os.path.join(args.out, "tokenizer.json"))

    # Golden cases: PyTorch logits for a few inputs (float32 raw little-endian in golden.bin).
    gen = torch.Generator().manual_seed(7)
    cases, blobs, offset = [], [], 0
    for name, b, l in (("b1-l8", 1, 8), ("b2-l16", 2, 16)):
        x = torch.randint(0, cfg["vocab"], (b, l), generator=gen)
        with torch.no_grad():
            y = model(x).float().contiguous()
        arr = y.numpy().astype("<f4").tobytes()
        cases.append({"name": name, "batch": b, "length": l, "input_ids": x.reshape(-1).tolist(),
                      "logits": {"offset": offset, "count": y.numel()}})
        blobs.append(arr)
        offset += len(arr)
    with open(os.path.join(args.out, "golden.bin"), "wb") as f:
        f.write(b"".join(blobs))
    with open(os.path.join(args.out, "golden.json"), "w", encoding="utf-8") as f:
        json.dump({"format": 1, "data": "golden.bin", "cases": cases}, f)
        f.write("\n")

    data = open(onnx_path, "rb").read()
    test = {}
    tp = os.path.join(args.run, "test_eval.json")
    if os.path.exists(tp):
        test = json.load(open(tp, encoding="utf-8"))
    name = os.path.basename(os.path.normpath(args.out))
    manifest = {
        "format": 1,
        "kind": "causal-lm",
        "name": name,
        "vocab_size": cfg["vocab"],
        "tokens": cfg["vocab"],
        "length": cfg["length"],
        "model": {"type": "causal-transformer", "hidden_size": cfg["hidden_size"], "n_blocks": cfg["n_blocks"],
                  "n_heads": cfg["n_heads"], "params": cfg["params"], "positions": "rotary", "norm": "pre-LN",
                  "tied_embeddings": True, "weights_dtype": "float16"},
        "tokenizer": {"file": "tokenizer.json", "kind": "bpe", "vocab_size": cfg["vocab"],
                      "special_tokens": {"<|endoftext|>": cfg["vocab"] - 1}, "eos_id": cfg["vocab"] - 1},
        "onnx": {"file": "model.onnx", "opset": OPSET, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                 "external_data": [], "inputs": ["input_ids"], "outputs": ["logits"]},
        "source": {"kind": "training-run", "path": os.path.basename(os.path.normpath(args.run)),
                   "trainer": "export/train/train_ar.py", "weights": "ema, rounded to float16", "step": ck["step"],
                   "test_perplexity": test.get("perplexity")},
        "verify": {"golden": "golden.json", "data": "golden.bin", "tolerance": 1e-4, "max_abs_err": None},
        "exporter": exporter_versions(),
    }
    with open(os.path.join(args.out, "sedd.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"exported {onnx_path} ({len(data)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["train", "eval", "export"])
    ap.add_argument("--data", default="data")
    ap.add_argument("--run", default="runs/brown-ar-small")
    ap.add_argument("--out", default="models/brown-sedd-small-ar")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--minutes", type=float, default=18.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--bench", type=int, default=0)
    args = ap.parse_args()
    {"train": cmd_train, "eval": cmd_eval, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()
