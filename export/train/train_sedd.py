"""Train a small SEDD model (absorb graph, log-linear noise) on the token splits from train_tokenizer.py.

The loss is the reference's score entropy (losses.py / graph_lib.Absorbing.score_entropy):
t ~ U(sampling_eps, 1), σ = -log(1 - (1 - eps) t), dσ = (1 - eps) / (1 - (1 - eps) t),
each token masked with probability 1 - e^{-σ}, loss = Σ_i dσ · score_entropy_i, mean over the
batch. --masking count draws t and the mask differently (k ~ U{1..L} masked tokens, t given k,
an importance weight: see CountMasking) for the same expected loss with less variance.
AdamW, linear warm-up then cosine decay, gradient clipping at 1, EMA with the reference's
num_updates warm-up. The run directory uses the reference's layout:

  RUN/.hydra/config.yaml                 full config (tokens, graph, noise, model, training, data, optim)
  RUN/checkpoints-meta/checkpoint.pth    {model, ema, optimizer, step}, rewritten every few minutes
  RUN/tokenizer.json                     the tokenizer the data was encoded with
  RUN/train.log                          training and validation losses

Usage:
  .venv/bin/python export/train/train_sedd.py --run runs/brown-sedd-small --steps 6000
  .venv/bin/python export/train/train_sedd.py --bench 20      # time 20 steps and exit
  .venv/bin/python export/train/train_sedd.py --run RUN --resume --time-independent --minutes 60
      # continue a run with the network's time input held at 0 (model.time_independent)
  .venv/bin/python export/train/train_sedd.py --run RUN --init-from models/brown-sedd-small --time-independent ...
      # continue training an exported model whose checkpoint is not at hand: its weights are read
      # back from model.onnx (model and EMA), its step from sedd.json, the optimizer starts afresh
  .venv/bin/python export/train/train_sedd.py --device cuda --batch 256 --hidden 512 --blocks 8 --heads 8 ...
"""

import argparse
import math
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F
import yaml

import common  # noqa: F401  (puts export/ on sys.path)
from common import EMA, Log, RandomBlocks, fixed_blocks, load_ids, lr_at
from seddpy.model import SEDD, log_expm1_sigma, modulate

NOISE_EPS = 1e-3
SAMPLING_EPS = 1e-3


def loglinear(t, eps=NOISE_EPS):
    """Total noise σ(t) and rate dσ/dt of the reference's log-linear schedule."""
    sigma = -torch.log1p(-(1 - eps) * t)
    dsigma = (1 - eps) / (1 - (1 - eps) * t)
    return sigma, dsigma


def perturb(x0, sigma, mask_id, gen=None):
    """Absorb forward process: each token becomes the mask with probability 1 - e^{-σ}.
    The uniforms come from gen on the CPU (so a run is the same on any device)."""
    u = torch.rand(x0.shape, generator=gen).to(x0.device)
    move = u < (1 - torch.exp(-sigma))[:, None]
    return torch.where(move, torch.full_like(x0, mask_id), x0)


class CountMasking:
    """Draws (t, mask) for the same loss with far less variance: an importance-sampled estimator
    of the reference's E_{t ~ U(eps_s, 1)} E_{mask | t} [dσ Σ_i score_entropy_i].

    The reference draws t, then masks each token with probability p = 1 - e^{-σ(t)} = (1 - eps) t,
    so a sequence may get no mask or a handful whose terms carry weight ~1/t. Here the number of
    masked tokens k is drawn uniformly from 1..L, exactly k positions are masked uniformly at
    random, and p given k is drawn from its Beta(k, L - k + 1) law truncated to the reference's
    range [(1 - eps) eps_s, 1 - eps] (the k-th smallest of L uniforms, redrawn when outside). The
    sequence's loss is then multiplied by the likelihood ratio

        w = L p Z_k / (k (1 - eps_s) (1 - eps)),   Z_k = P(p_min <= Beta(k, L - k + 1) <= p_max),

    so E[w · loss] is the reference's expected loss for every model (k = 0 has zero loss and is
    never drawn). Z_k is exact: P(Beta(k, L - k + 1) <= x) = P(Binomial(L, x) >= k). With w,
    each masked token's term weighs about L / k instead of a binomially noisy 1 / t."""

    def __init__(self, length, noise_eps=NOISE_EPS, sampling_eps=SAMPLING_EPS):
        self.length = length
        self.p_min = (1 - noise_eps) * sampling_eps
        self.p_max = 1 - noise_eps
        self.scale = (1 - sampling_eps) * (1 - noise_eps)
        self.z = torch.tensor([binomial_tail(length, self.p_max, k) - binomial_tail(length, self.p_min, k)
                               for k in range(length + 1)], dtype=torch.float64)

    def draw(self, x0, mask_id, gen):
        """(xt, σ, weight) for a batch of clean sequences x0 [B, L]."""
        b, n = x0.shape
        if n != self.length:
            raise ValueError(f"CountMasking was built for length {self.length}, got {n}")
        k = torch.randint(1, n + 1, (b,), generator=gen)
        p = torch.empty(b, dtype=torch.float64)
        todo = torch.arange(b)
        while len(todo):
            u = torch.rand(len(todo), n, generator=gen, dtype=torch.float64).sort(dim=1).values
            cand = u[torch.arange(len(todo)), k[todo] - 1]
            ok = (cand >= self.p_min) & (cand <= self.p_max)
            p[todo[ok]] = cand[ok]
            todo = todo[~ok]
        ranks = torch.rand(b, n, generator=gen).argsort(dim=1).argsort(dim=1)
        masked = ranks < k[:, None]
        xt = torch.where(masked.to(x0.device), torch.full_like(x0, mask_id), x0)
        w = n * p * self.z[k] / (k * self.scale)
        sigma = -torch.log1p(-p)
        return xt, sigma.float().to(x0.device), w.float().to(x0.device)


def binomial_tail(n, x, k):
    """P(Binomial(n, x) >= k) in float64."""
    if k <= 0:
        return 1.0
    return float(sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(k, n + 1)))


def masked_hidden(model, xt, sigma, mask_id):
    """The output layer's input at the masked positions: ([M, D] features, mask, batch row of each).

    Same submodules and maths as SEDD.forward up to its final linear layer, which the loss
    applies itself: the score entropy of the absorb graph is zero at unmasked positions, and
    the [B, L, N] output is the largest cost of a CPU step, so it runs on masked rows only."""
    if not model.absorb or mask_id != model.vocab_size - 1:
        raise ValueError(f"training needs the absorb graph with the mask as the last state "
                         f"(id {model.vocab_size - 1}), got mask id {mask_id}")
    x = model.vocab_embed(xt)
    c = F.silu(model.sigma_map(torch.zeros_like(sigma) if model.time_independent else sigma))
    cos, sin = model.rotary_emb(x)
    for block in model.blocks:
        x = block(x, cos, sin, c)
    masked = xt == mask_id
    rows = masked.nonzero(as_tuple=True)[0]
    final = model.output_layer
    shift, scale = final.adaLN_modulation(c[rows]).chunk(2, dim=-1)
    h = final.norm_final(x[masked][:, None, :])[:, 0, :]
    return modulate(h, shift, scale), masked, rows


def score_offset(model, sigma):
    """What SEDD.forward subtracts from every log-score with scale_by_sigma: log(e^σ - 1) + log(N - 1)."""
    if not model.scale_by_sigma:
        return torch.zeros_like(sigma)
    return log_expm1_sigma(sigma) + math.log(model.vocab_size - 1)


def masked_log_score(model, xt, sigma, mask_id):
    """model(xt, sigma) at the masked positions: ([M, N] log-scores, mask, batch row of each).
    The loss does not build this matrix (see sedd_loss); test_train checks it against SEDD.forward."""
    h, masked, rows = masked_hidden(model, xt, sigma, mask_id)
    out = model.output_layer.linear(h) - score_offset(model, sigma)[rows][:, None]
    # SEDD.forward sets the entry of the input token (here the mask) to exactly zero.
    return torch.cat([out[:, :mask_id], torch.zeros_like(out[:, mask_id:])], dim=-1), masked, rows


def sedd_loss(model, x0, mask_id, t=None, gen=None, counts=None):
    """Per-sequence loss Σ_i dσ · score_entropy_i (the reference's loss_fn), shape [B].

    Score entropy at a masked position with clean token y and r = 1 / (e^σ - 1):
    Σ_{j ≠ mask} exp(s_j) - r · s_y + r (log r - 1); zero at unmasked positions.
    With s_j = o_j - off (o the final linear layer, off = score_offset) this is
    exp(logsumexp_{j ≠ mask} o_j - off) - r (o_y - off) + r (log r - 1). The mask is the
    last state, so the j ≠ mask columns are the first mask_id rows of the layer's weight;
    o_y is a dot product with row y. Neither builds a full-width copy or gather of the
    [M, N] output, whose backward passes were a third of a CPU step.

    counts (a CountMasking) draws t and the mask its own way and returns the importance-weighted
    loss, whose expectation is the same."""
    weight = None
    if counts is not None:
        if t is not None:
            raise ValueError("sedd_loss: give t or counts, not both")
        xt, sigma, weight = counts.draw(x0, mask_id, gen)
        dsigma = (1 - NOISE_EPS) / torch.exp(-sigma)  # (1 - eps) / (1 - (1 - eps) t)
    else:
        if t is None:
            t = (1 - SAMPLING_EPS) * torch.rand(x0.shape[0], generator=gen) + SAMPLING_EPS
        sigma, dsigma = loglinear(t.to(x0.device))
        xt = perturb(x0, sigma, mask_id, gen)
    h, masked, rows = masked_hidden(model, xt, sigma, mask_id)
    lin = model.output_layer.linear
    off = score_offset(model, sigma)[rows]
    lse = torch.logsumexp(F.linear(h, lin.weight[:mask_id], lin.bias[:mask_id]), dim=-1)
    y = x0[masked]
    o_y = (h * lin.weight[y]).sum(-1) + lin.bias[y]
    esigm1 = torch.where(sigma < 0.5, torch.expm1(sigma), torch.exp(sigma) - 1)
    r = (1.0 / esigm1)[rows]
    const = r * (torch.log(r) - 1)
    per_pos = dsigma[rows] * (torch.exp(lse - off) - r * (o_y - off) + const)
    if weight is not None:
        per_pos = per_pos * weight[rows]
    return torch.zeros(x0.shape[0], dtype=per_pos.dtype, device=x0.device).index_add(0, rows, per_pos)


@torch.no_grad()
def eval_loss(model, blocks, mask_id, n_t=8, batch=32, seed=1234):
    """Mean loss per token over the given blocks with n_t stratified t each (fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for k in range(n_t):
        for i in range(0, len(blocks), batch):
            x0 = blocks[i : i + batch]
            u = (k + torch.rand(x0.shape[0], generator=gen)) / n_t
            t = (1 - SAMPLING_EPS) * u + SAMPLING_EPS
            total += sedd_loss(model, x0, mask_id, t=t, gen=gen).sum().item()
            count += x0.numel()
    return total / count


def make_config(args, tokens):
    return {
        "ngpus": 0,
        "tokens": tokens,
        "training": {
            "batch_size": args.batch, "accum": 1, "n_iters": args.steps, "ema": args.ema,
            "seed": args.seed, "weight": "standard", "snapshot_freq_minutes": args.save_minutes,
            # ours, not the reference's: how t and the mask are drawn (same expected loss)
            "masking": args.masking,
        },
        "data": {
            "train": "brown+nlp-corpus (export/train/data.py, split train)",
            "valid": "brown+nlp-corpus (split valid)",
            "cache_dir": args.data,
            "blocks": "random offsets into the <|endoftext|>-joined token stream",
        },
        "graph": {"type": "absorb", "file": args.data, "report_all": False},
        "noise": {"type": "loglinear", "eps": NOISE_EPS, "sigma_min": 1e-4, "sigma_max": 20},
        "sampling": {"predictor": "analytic", "steps": 128, "noise_removal": True},
        "model": {
            "name": "brown-sedd-small", "type": "ddit", "hidden_size": args.hidden, "cond_dim": args.cond,
            "length": args.length, "n_blocks": args.blocks, "n_heads": args.heads,
            "scale_by_sigma": True, "dropout": 0.0,
            # ours: the network's time input held at 0 (RADD); written only when asked for
            **({"time_independent": True} if args.time_independent else {}),
        },
        "optim": {
            "weight_decay": args.weight_decay, "optimizer": "AdamW", "lr": args.lr, "beta1": 0.9,
            "beta2": 0.999, "eps": 1e-8, "warmup": args.warmup, "grad_clip": 1.0,
            "schedule": "cosine to 0.1 lr",
        },
    }


def to_cpu(obj):
    """obj with every tensor in it moved to the CPU, so checkpoints load anywhere."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save(run, model, ema, opt, step):
    path = os.path.join(run, "checkpoints-meta", "checkpoint.pth")
    tmp = path + ".tmp"
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step}
    torch.save(to_cpu(state), tmp)
    os.replace(tmp, path)


def init_from_export(args, tok_path):
    """Weights, step and token count of an exported model directory, after checking that RUN's
    shape and data agree with it. Sets args' network shape from sedd.json."""
    from seddpy.hashes import file_sha256
    from seddpy.onnx_weights import WeightsError, load_exported

    man_path = os.path.join(args.init_from, "sedd.json")
    if not os.path.isfile(man_path):
        sys.exit(f"--init-from {args.init_from}: no sedd.json there; give an exported model directory")
    try:
        model, man = load_exported(args.init_from)
    except (OSError, ValueError, KeyError, WeightsError) as e:
        sys.exit(f"--init-from {args.init_from}: {e}")
    if man.get("kind") != "sedd" or man.get("graph") != "absorb" or man.get("noise", {}).get("type") != "loglinear" \
            or abs(float(man["noise"].get("eps", -1)) - NOISE_EPS) > 1e-12 or not man["model"].get("scale_by_sigma"):
        sys.exit(f"--init-from {args.init_from}: this trainer continues absorb / log-linear (eps {NOISE_EPS}) "
                 "SEDD models with scale_by_sigma only")
    if man["model"].get("time_independent") and not args.time_independent:
        sys.exit(f"--init-from {args.init_from}: a time-independent network; pass --time-independent")
    want = man["tokenizer"].get("sha256")
    if not os.path.isfile(tok_path) or file_sha256(tok_path) != want:
        sys.exit(f"--init-from {args.init_from}: {tok_path} is not the model's tokenizer (sha256 {want}); encode "
                 f"the splits with it: export/train/train_tokenizer.py --data {args.data} "
                 f"--tokenizer {os.path.join(args.init_from, man['tokenizer']['file'])}")
    m = man["model"]
    args.hidden, args.blocks, args.heads, args.cond = m["hidden_size"], m["n_blocks"], m["n_heads"], m["cond_dim"]
    args.length = int(man["length"])
    step = (man.get("source") or {}).get("step")
    return {"state": model.state_dict(), "step": int(step) if isinstance(step, int) and step > 0 else 0,
            "tokens": int(man["tokens"]), "onnx_sha256": man["onnx"].get("sha256", ""),
            "time_independent": bool(m.get("time_independent", False))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data")
    ap.add_argument("--run", default="runs/brown-sedd-small")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--cond", type=int, default=128)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2100,
                    help="steps of this invocation (a resumed or --init-from run counts from where it starts)")
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="wall-clock budget: the schedule runs on max(step/steps, elapsed/budget) and stops at 1")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--save-minutes", type=float, default=4.0)
    ap.add_argument("--decay-frac", type=float, default=1.0,
                    help="learning rate is constant until this fraction of the run, then cosine-decays (1: whole run)")
    ap.add_argument("--resume", action="store_true",
                    help="continue RUN's checkpoint (model, EMA, optimizer, step) with this invocation's schedule")
    ap.add_argument("--init-from", metavar="MODEL_DIR",
                    help="start RUN from an exported model directory (sedd.json + model.onnx, e.g. "
                         "models/brown-sedd-small) when its training checkpoint is not at hand: the network "
                         "shape comes from sedd.json, model and EMA weights from model.onnx, the step from "
                         "sedd.json's source; the optimizer starts afresh, so the warm-up restarts too")
    ap.add_argument("--masking", choices=["time", "count"], default="time",
                    help="time: the reference's draw (t ~ U, then each token masked with probability "
                         "1 - e^-σ); count: the same expected loss with k ~ U{1..L} masked tokens and an "
                         "importance weight (CountMasking), much less variance per step")
    ap.add_argument("--time-independent", action="store_true",
                    help="hold the network's time input at 0 (model.time_independent: outputs depend on sigma "
                         "only through scale_by_sigma, so samplers can reuse them); with --resume, converts a "
                         "time-conditioned run, keeping its weights")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--device", default="cpu",
                    help="cpu, or cuda / cuda:N for a GPU (float32 with TF32 matmuls; random draws stay on the "
                         "CPU generator, so the data and noise of a run do not depend on the device). The CUDA "
                         "path has only been run on the CPU so far: no GPU was available when it was written")
    args = ap.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError:
        ap.error(f"--device {args.device}: use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            ap.error(f"--device {args.device}: this torch has no usable CUDA device "
                     f"(a CUDA build of torch and a GPU are needed); use --device cpu")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif device.type != "cpu":
        ap.error(f"--device {args.device}: use cpu, cuda or cuda:N")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok_path = os.path.join(args.data, "tokenizer.json")
    init = None
    if args.init_from:
        if args.resume:
            ap.error("--init-from starts a new run from an export; --resume continues RUN's own checkpoint: use one")
        if os.path.exists(os.path.join(args.run, "checkpoints-meta", "checkpoint.pth")):
            sys.exit(f"{args.run} already holds a checkpoint: continue it with --resume, or pick a new --run "
                     "(--init-from never overwrites a run)")
        init = init_from_export(args, tok_path)
    elif args.resume:
        run_cfg = os.path.join(args.run, ".hydra", "config.yaml")
        if not os.path.isfile(os.path.join(args.run, "checkpoints-meta", "checkpoint.pth")):
            sys.exit(f"--resume: {args.run} holds no checkpoints-meta/checkpoint.pth to continue")
        if os.path.isfile(run_cfg):
            # the network's shape is the run's, whatever the shape flags say
            with open(run_cfg, encoding="utf-8") as f:
                m = (yaml.safe_load(f) or {}).get("model", {})
            args.hidden, args.blocks = m.get("hidden_size", args.hidden), m.get("n_blocks", args.blocks)
            args.heads, args.cond = m.get("n_heads", args.heads), m.get("cond_dim", args.cond)
            args.length = m.get("length", args.length)
    train_ids = load_ids(args.data, "train")
    tokens = int(train_ids.max()) + 1  # <|endoftext|> is the last id
    if init is not None and tokens != init["tokens"]:
        sys.exit(f"{args.data}: its train split has {tokens} token ids, {args.init_from} was trained on "
                 f"{init['tokens']}: encode the data with the model's tokenizer")
    mask_id = tokens
    cfg = make_config(args, tokens)
    model = SEDD(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    data = RandomBlocks(train_ids, args.length, args.batch, args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    counts = CountMasking(args.length) if args.masking == "count" else None

    if args.bench:
        model.train()
        for i in range(args.bench + 2):
            if i == 2:
                t0 = time.time()
            loss = sedd_loss(model, data.next().to(device), mask_id, gen=gen, counts=counts).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        dt = (time.time() - t0) / args.bench
        print(f"params {n_params}, batch {args.batch}x{args.length}: {dt:.3f} s/step, "
              f"{args.batch * args.length / dt:.0f} tokens/s")
        return

    os.makedirs(os.path.join(args.run, ".hydra"), exist_ok=True)
    os.makedirs(os.path.join(args.run, "checkpoints-meta"), exist_ok=True)
    cfg_path = os.path.join(args.run, ".hydra", "config.yaml")
    if args.resume and os.path.exists(cfg_path) and not args.time_independent:
        with open(cfg_path, encoding="utf-8") as f:
            if (yaml.safe_load(f) or {}).get("model", {}).get("time_independent"):
                sys.exit(f"{args.run} trains a time-independent network: resume it with --time-independent "
                         "(a network trained so cannot go back to reading its time input)")
    with open(cfg_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    shutil.copyfile(tok_path, os.path.join(args.run, "tokenizer.json"))
    log = Log(os.path.join(args.run, "train.log"))
    log(f"params {n_params} tokens {tokens} config {cfg['model']} batch {args.batch} steps {args.steps} "
        f"torch {torch.__version__}")

    valid = fixed_blocks(load_ids(args.data, "valid"), args.length)[:64].to(device)
    ema = EMA(model.parameters(), args.ema)
    step = 0
    if args.resume:
        ck = torch.load(os.path.join(args.run, "checkpoints-meta", "checkpoint.pth"), map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        ema.num_updates = ck["ema"]["num_updates"]
        ema.shadow_params = [p.clone().to(device) for p in ck["ema"]["shadow_params"]]
        step = ck["step"]
        # fresh batches and noise: the generators restart from a seed that depends on the step
        data = RandomBlocks(train_ids, args.length, args.batch, args.seed + step)
        gen = torch.Generator().manual_seed(args.seed + 1 + step)
        log(f"resumed at step {step}: lr {args.lr}, {args.minutes} more minutes, decay after {args.decay_frac}")
    fresh_warmup = 0
    if init is not None:
        model.load_state_dict(init["state"])  # every tensor, buffers included: nothing left at its init
        ema = EMA(model.parameters(), args.ema)
        ema.num_updates = step = init["step"]
        fresh_warmup = step  # a fresh optimizer: the warm-up counts from here
        data = RandomBlocks(train_ids, args.length, args.batch, args.seed + step)
        gen = torch.Generator().manual_seed(args.seed + 1 + step)
        log(f"initialized from {args.init_from} (model.onnx sha256 {init['onnx_sha256'][:16]}…, step {step}): "
            f"model and EMA weights from the export, fresh optimizer, warm-up {args.warmup} steps, "
            f"lr {args.lr}, {args.minutes} minutes, decay after {args.decay_frac}")
        # where the run starts; for a conversion, also what holding the time input costs before training
        model.eval()
        with torch.no_grad():
            if args.time_independent and not init["time_independent"]:
                model.time_independent = False
                v_read = eval_loss(model, valid, mask_id)
                model.time_independent = True
                log(f"step {step} start: valid loss/token {v_read:.4f} with the time input read, "
                    f"{eval_loss(model, valid, mask_id):.4f} with it held at 0")
            else:
                log(f"step {step} start: valid loss/token {eval_loss(model, valid, mask_id):.4f}")
        model.train()
    step0 = step
    ema_model = SEDD(cfg).to(device)
    t_start = time.time()
    last_save = t_start
    run_loss, run_n = 0.0, 0
    while True:
        step += 1
        progress = (step - 1 - step0) / args.steps
        if args.minutes > 0:
            progress = max(progress, (time.time() - t_start) / (args.minutes * 60))
        last = progress >= 1.0 or step - step0 >= args.steps
        for g in opt.param_groups:
            decay = max(0.0, (min(progress, 1.0) - (1 - args.decay_frac)) / args.decay_frac)
            g["lr"] = lr_at(step - 1 - fresh_warmup, decay, args.lr, args.warmup)
        x0 = data.next().to(device)
        loss = sedd_loss(model, x0, mask_id, gen=gen, counts=counts).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model.parameters())
        run_loss += loss.item() / x0.shape[1]
        run_n += 1
        if step % args.log_every == 0:
            el = time.time() - t_start
            log(f"step {step} loss/token {run_loss / run_n:.4f} gnorm {gnorm:.2f} "
                f"lr {opt.param_groups[0]['lr']:.2e} elapsed {el / 60:.1f} min tokens {step * args.batch * args.length}")
            run_loss, run_n = 0.0, 0
        if step % args.eval_every == 0 or last:
            ema_model.load_state_dict(model.state_dict())
            ema.copy_to(ema_model.parameters())
            ema_model.eval()
            v = eval_loss(ema_model, valid, mask_id)
            log(f"step {step} valid(ema) loss/token {v:.4f} bound ppl {math.exp(v):.1f}")
            if last:
                model.eval()
                v = eval_loss(model, valid, mask_id)
                model.train()
                log(f"step {step} valid(raw, no ema) loss/token {v:.4f} bound ppl {math.exp(v):.1f}")
        if time.time() - last_save > args.save_minutes * 60 or last:
            save(args.run, model, ema, opt, step)
            last_save = time.time()
            log(f"step {step} saved checkpoint")
        if last:
            break
    log(f"done: {step} steps, {step * args.batch * args.length} tokens, "
        f"{(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
