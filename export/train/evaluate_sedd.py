"""Measure a trained SEDD run in PyTorch: test-split likelihood bound and unedited samples.

Bound: for each test block x0, K stratified times t_k = eps_l + (1 - eps_l)(k + u_k)/K with eps_l = 1e-3 and one
forward corruption each; the block's estimate is (1 - eps_l) · mean_k σ'(t_k) Σ_i ℓ_i divided by
its length (nats per token). The reported bound is the mean over blocks, its standard error the
standard deviation over blocks / sqrt(blocks), and PPL ≤ exp(bound) with s.e. exp(bound) · s.e.
(delta method). The prior term at t = 1 is left out, as in the paper's numbers. "mc_se" is the
Monte-Carlo part of the error alone: per block, adjacent strata are paired and the variance of the
block's mean is (1/K²) Σ_pairs 2 Σ_{k∈pair} (y_k − ȳ_pair)² (conservative; the estimator `sedd eval`
reports), and the corpus value is sqrt(Σ_blocks variance) / blocks.

Blocks: test.ids.npy is <|endoftext|> doc1 <|endoftext|> doc2 ... <|endoftext|>. The blocks are cut
from ids[1:], i.e. doc1 <|endoftext|> doc2 <|endoftext|> ..., which is exactly the token stream that
`sedd eval --documents eos --drop-last --data data/test.txt` builds (each document followed by
<|endoftext|>), so both measure the same 128-token windows; the tail shorter than the length is
dropped.

Samples: the analytic ("Tweedie τ-leaping") predictor from all-mask, time grid
linspace(1, 1e-5, steps + 1), then the denoiser at t = 1e-5; categorical draws in float64.

Usage:
  .venv/bin/python export/train/evaluate_sedd.py --run runs/brown-sedd-small --t-per-block 16
  .venv/bin/python export/train/evaluate_sedd.py --run runs/brown-sedd-small --t-per-block 16 --bound-only
"""

import argparse
import json
import math
import os
import re
import time

import numpy as np
import torch
import yaml
from tokenizers import Tokenizer

import common  # noqa: F401
from common import fixed_blocks, load_ids
from seddpy.model import SEDD
from train_sedd import SAMPLING_EPS, loglinear, sedd_loss

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def load_run(run):
    """SEDD with the run's EMA weights."""
    with open(os.path.join(run, ".hydra", "config.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    model = SEDD(cfg)
    ck = torch.load(os.path.join(run, "checkpoints-meta", "checkpoint.pth"), map_location="cpu")
    model.load_state_dict(ck["model"])
    with torch.no_grad():
        for p, s in zip(model.parameters(), ck["ema"]["shadow_params"]):
            p.copy_(s)
    model.eval()
    return model, cfg, ck


def aligned_blocks(ids, length):
    """Consecutive blocks of ids[1:] (the stream without its leading <|endoftext|>), tail dropped."""
    return fixed_blocks(ids[1:], length)


def mc_variance(y):
    """Variance of the mean of K stratified draws per row (y: [rows, K]), strata paired as in
    `sedd eval` (the last group has three when K is odd)."""
    K = y.shape[1]
    v = torch.zeros(y.shape[0], dtype=torch.float64)
    g = 0
    while g < K:
        m = 3 if K - g == 3 else 2
        grp = y[:, g : g + m]
        v += m / (m - 1) * ((grp - grp.mean(1, keepdim=True)) ** 2).sum(1)
        g += m
    return v / K**2


@torch.no_grad()
def likelihood_bound(model, blocks, mask_id, k_per_block, batch=32, seed=0):
    """Bound per token: (mean over blocks, s.e. across blocks, Monte-Carlo-only s.e.)."""
    gen = torch.Generator().manual_seed(seed)
    draws = torch.zeros(len(blocks), k_per_block, dtype=torch.float64)
    for k in range(k_per_block):
        for i in range(0, len(blocks), batch):
            x0 = blocks[i : i + batch]
            u = (k + torch.rand(x0.shape[0], generator=gen)) / k_per_block
            t = SAMPLING_EPS + (1 - SAMPLING_EPS) * u
            draws[i : i + batch, k] = sedd_loss(model, x0, mask_id, t=t, gen=gen).double()
    draws *= (1 - SAMPLING_EPS) / blocks.shape[1]  # nats per token, one value per (block, stratum)
    per_token = draws.mean(1)
    m = per_token.mean().item()
    se = per_token.std(unbiased=True).item() / math.sqrt(len(blocks))
    mc_se = mc_variance(draws).sum().sqrt().item() / len(blocks)
    return m, se, mc_se


@torch.no_grad()
def sample(model, mask_id, batch, length, steps, seed, eps=1e-5):
    """Analytic predictor + denoiser for the absorb graph (SEDD.md, 'Predictors')."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.full((batch, length), mask_id, dtype=torch.long)
    ts = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)

    def draw(weights):
        w = weights.clamp(min=0)
        u = torch.rand(w.shape, generator=gen, dtype=torch.float64).clamp(min=1e-300)
        return (w.log() - (-u.log()).log()).argmax(-1)

    def update(x, t, dsig):
        sigma = loglinear(torch.full((batch,), float(t)))[0]
        score = model(x, sigma.float()).double().exp()  # [B, L, N]; entry at x_i is exp(0) = 1
        masked = x == mask_id
        ed = math.exp(dsig)
        w = score[..., :mask_id] * (ed - 1.0)  # j < M: e^{dσ} e^{s_j} (1 - e^{-dσ})
        total = score.sum(-1, keepdim=True)
        stay = ed + (1.0 - ed) * total  # z_M: e^{dσ}·e^{s_M} + (1 - e^{dσ}) Σ_all e^s, s_M = 0
        w = torch.cat([w, stay], dim=-1)
        new = draw(w)
        return torch.where(masked, new, x)

    def total_noise(t):
        return loglinear(torch.tensor([t], dtype=torch.float64))[0].item()

    for k in range(steps):
        t, t_next = ts[k].item(), ts[k + 1].item()
        x = update(x, t, total_noise(t) - total_noise(t_next))
    # denoiser: analytic with dσ = σ(eps), mask column dropped
    sigma = loglinear(torch.full((batch,), eps))[0]
    score = model(x, sigma.float()).double().exp()
    w = score[..., :mask_id] * (math.exp(total_noise(eps)) - 1.0)
    x = torch.where(x == mask_id, draw(w), x)
    return x


def word_fraction(texts, vocab_words):
    words = [w.lower() for t in texts for w in WORD.findall(t)]
    if not words:
        return 0.0, 0
    return sum(w in vocab_words for w in words) / len(words), len(words)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/brown-sedd-small")
    ap.add_argument("--data", default="data")
    ap.add_argument("--t-per-block", type=int, default=16)
    ap.add_argument("--max-blocks", type=int, default=0, help="0: all test blocks")
    ap.add_argument("--samples", type=int, default=8, help="samples per step count")
    ap.add_argument("--steps", default="16,64,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-bound", action="store_true")
    ap.add_argument("--bound-only", action="store_true", help="measure the bound, keep the stored samples")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bound's draws")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg, ck = load_run(args.run)
    mask_id = int(cfg["tokens"])
    length = int(cfg["model"]["length"])
    tok = Tokenizer.from_file(os.path.join(args.run, "tokenizer.json"))
    out_path = os.path.join(args.run, "eval.json")
    res = json.load(open(out_path, encoding="utf-8")) if os.path.exists(out_path) else {}
    if res.get("step") != ck["step"]:
        res = {}  # measured on other weights (the Go SDK's go_eval too): nothing of it carries over
    res["step"] = ck["step"]
    res["weights"] = "ema"

    if not args.skip_bound:
        t0 = time.time()
        blocks = aligned_blocks(load_ids(args.data, "test"), length)
        if args.max_blocks:
            blocks = blocks[: args.max_blocks]
        m, se, mc_se = likelihood_bound(model, blocks, mask_id, args.t_per_block, seed=args.seed)
        res["bound"] = {
            "split": "test", "stream": "test.ids.npy[1:]", "blocks": len(blocks), "length": length,
            "tokens": blocks.numel(), "t_per_block": args.t_per_block,
            "t_sampling": "stratified, one corruption per t", "eps_l": SAMPLING_EPS, "seed": args.seed,
            "nll_bound_per_token": m, "se": se, "mc_se": mc_se, "ppl_bound": math.exp(m),
            "ppl_se": math.exp(m) * se, "seconds": time.time() - t0, "threads": args.threads,
        }
        print(json.dumps(res["bound"], indent=1), flush=True)
    if args.bound_only:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)
        return

    with open(os.path.join(args.data, "train.txt"), encoding="utf-8") as f:
        vocab_words = {w.lower() for w in WORD.findall(f.read())}
    res["samples"] = {}
    for steps in [int(s) for s in args.steps.split(",")]:
        t0 = time.time()
        x = sample(model, mask_id, args.samples, length, steps, seed=steps)
        texts = [tok.decode(row.tolist(), skip_special_tokens=False) for row in x]
        frac, n = word_fraction(texts, vocab_words)
        res["samples"][str(steps)] = {"texts": texts, "word_in_vocab": frac, "words": n,
                                      "seconds": time.time() - t0, "seed": steps}
        print(f"steps {steps}: word-in-vocab {frac:.3f} of {n} words, {time.time() - t0:.0f}s", flush=True)
        print(texts[0][:400], flush=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
