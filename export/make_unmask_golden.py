"""Writes sdk/diffusion/testdata/unmask.json: temperature, top-k and top-p of the unmasking law.

A masked position of the absorbing graph unmasks to token j with probability
q_j ∝ exp(s_j) (s: its log scores over the ordinary tokens). sdk/diffusion can
reshape q, in this order, each step renormalized:

  1. temperature T: q_j ∝ exp(s_j / T);
  2. top-k: keep the k most likely tokens;
  3. top-p: keep the smallest set of the most likely tokens whose mass is ≥ p;

ranking by decreasing probability, ties broken by the lower token id. This script
restates that definition in numpy (float64), independently of the Go code, on rows
drawn from a fixed seed plus hand-made rows for ties, -inf scores and boundaries:

    .venv/bin/python export/make_unmask_golden.py            # rewrite the file
    .venv/bin/python export/make_unmask_golden.py --check    # fail if it would change

Log scores are rounded to float32 (what a model returns) before any maths.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seddpy import goldcheck  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "diffusion", "testdata", "unmask.json")


def probs(row, temperature, top_k, top_p):
    s = np.asarray(row, dtype=np.float64)
    t = 1.0 if temperature == 0 else temperature
    q = np.exp((s - s.max()) / t)
    q = q / q.sum()
    # Stable sort on -q keeps the lower id first among equal probabilities.
    order = np.argsort(-q, kind="stable")
    keep = len(q)
    if 0 < top_k < len(q):
        keep = top_k
    if 0 < top_p < 1:
        kept = q[order[:keep]]
        mass = np.cumsum(kept / kept.sum())
        keep = int(np.argmax(mass >= top_p)) + 1
    out = np.zeros_like(q)
    out[order[:keep]] = q[order[:keep]]
    return (out / out.sum()).tolist()


def f32(v):
    return [float(np.float32(x)) for x in v]


def build():
    rng = np.random.default_rng(20261202)
    cases = []

    def add(name, why, row, temperature=0.0, top_k=0, top_p=0.0):
        row = f32(row)
        cases.append({
            "name": name, "why": why, "log_score": [x if np.isfinite(x) else "-inf" for x in row],
            "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "probs": probs(row, temperature, top_k, top_p),
        })

    for k in range(6):
        row = rng.normal(0.0, 2.0, size=9) - 3.0
        add(f"random-{k}-temperature-0.7", "sharper", row, temperature=0.7)
        add(f"random-{k}-temperature-1.6", "flatter", row, temperature=1.6)
        add(f"random-{k}-top-k-3", "three most likely", row, top_k=3)
        add(f"random-{k}-top-p-0.8", "nucleus", row, top_p=0.8)
        add(f"random-{k}-all", "temperature, then top-k, then top-p of the renormalized rest", row,
            temperature=0.5, top_k=6, top_p=0.9)
    wide = rng.normal(0.0, 1.5, size=200)
    add("wide-top-p-0.5", "many tokens", wide, top_p=0.5)
    add("wide-top-k-17-temperature-2", "many tokens", wide, temperature=2.0, top_k=17)
    ties = [0.0, 1.0, 1.0, 1.0, -2.0, 1.0]
    add("ties-top-k-2", "equal scores: the lower ids win", ties, top_k=2)
    add("ties-top-p-0.3", "each of four equal tokens holds 0.23: the two lowest ids are kept", ties, top_p=0.3)
    add("ties-top-p-0.5", "two equal tokens hold 0.45: three of the four are kept", ties, top_p=0.5)
    neg = [-np.inf, 0.5, -np.inf, -1.0, 2.0]
    add("minus-inf-temperature", "a zero-probability token stays at zero", neg, temperature=3.0)
    add("minus-inf-top-k-4", "k above the tokens with mass keeps zeros at zero", neg, top_k=4)
    add("top-k-1", "greedy", [0.3, 2.5, 2.4, -1.0], top_k=1)
    add("top-p-1e-9", "only the most likely token", [0.3, 2.5, 2.4, -1.0], top_p=1e-9)
    add("tiny-temperature", "the most likely token only, without overflow", [0.3, 2.5, 2.4, -1.0], temperature=1e-4)
    add("huge-scores", "scores far from 0", [300.0, 301.0, 299.5, -500.0], temperature=0.9, top_p=0.95)
    return {"format": 1, "cases": cases}


def stale(doc, path):
    """Differences between doc and the committed file at path (goldcheck.stale_file)."""
    return goldcheck.stale_file(doc, path)


def main():
    goldcheck.golden_main(__doc__.splitlines()[0], build, OUT, "export/make_unmask_golden.py")


if __name__ == "__main__":
    main()
