"""Writes the goldens of sdk/internal/likelihood from seddpy.likelihood (float64 torch).

score_entropy.json: for fixed (x0, t, x_t) and a fixed float32 score tensor (small N, both
graphs, both noise schedules), the per-position score entropy and the loss of one draw
sigma'(t) * sum_i l_i from the reference formulas. The positive term is read from the float32
log_score_lse a model returns (exp(lse) = sum_{j != x_t} exp(s_j)), exactly as the Go code
reads it, so Go must match to 1e-9 relative; entropy_summed holds the same values with the sum
done in float64 from the scores (graph_lib.py as written), which agree to float32 precision.

tiny-absorb-estimate.json, tiny-uniform-estimate.json: the PyTorch estimate of the bound of a
fixed text under each tiny exported model (sdk/testdata/tiny-absorb, sdk/testdata/tiny-uniform).
The committed exports hold ONNX weights only, so each network is rebuilt from the random-init
shape and seed its sedd.json names (source field) and checked against the export's own golden
outputs first. The text is cut into windows of the model length (last short window kept at its
own length) and each window is estimated with K stratified timesteps; the Go test evaluates
the same windows through ONNX Runtime and compares within three combined standard errors.

    .venv/bin/python export/make_likelihood_golden.py            # rewrite the files
    .venv/bin/python export/make_likelihood_golden.py --check    # fail if they would change

--check compares numbers within the precision that produced them (seddpy.goldcheck: float64
maths to 1e-12 relative, estimates from the float32 network to 1e-6 relative), so that it
passes on any CPU; token ids, counts, seeds and names must be equal.
"""

import argparse
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from seddpy import checkpoints, goldcheck, golden  # noqa: E402
from seddpy import likelihood as lk  # noqa: E402
from seddpy import refmath as rm  # noqa: E402

D = torch.float64
ROOT = os.path.normpath(os.path.join(HERE, ".."))
OUT_DIR = os.path.join(ROOT, "sdk", "internal", "likelihood", "testdata")
MODEL_DIRS = [os.path.join(ROOT, "sdk", "testdata", "tiny-absorb"), os.path.join(ROOT, "sdk", "testdata", "tiny-uniform")]

NOISES = {
    "loglinear": ({"type": "loglinear", "eps": 1e-3}, rm.LogLinearNoise(1e-3)),
    "geometric": ({"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20.0}, rm.GeometricNoise(1e-4, 20.0)),
}

# The text of the end-to-end check: a few sentences of plain English (bytes = tokens).
TEXT = (
    "The quick brown fox jumps over the lazy dog. Score entropy discrete diffusion "
    "bounds the likelihood of text; this sentence checks that Go and PyTorch agree."
)
E2E_TIMESTEPS = 1024
E2E_SEED = 5


def floats(t):
    return [float(v) for v in t.flatten().tolist()]


def f32(t):
    return t.float().to(D)


def entropy_case(gen, name, why, graph, noise_name, t, length, scale, exactish=False):
    spec, noise = NOISES[noise_name]
    sigma = noise.total(t)
    limit = graph.tokens if graph.absorb else graph.dim
    x0 = torch.randint(0, limit, (length,), generator=gen)
    xt = lk.corrupt(graph, x0, sigma, gen)
    # Make sure both kinds of position appear.
    if graph.absorb:
        xt[0], xt[1] = graph.mask, x0[1]
    else:
        xt[0] = (x0[0] + 1) % graph.dim
        xt[1] = x0[1]
    if exactish:
        # The exact conditional score plus a little noise: small entropies out of large
        # cancelling terms, the regime of a trained model.
        s = rm.true_conditional_log_score(graph, sigma, xt, x0)
        s = torch.where(torch.isinf(s), torch.full_like(s, -30.0), s)
        s = s + scale * torch.randn(s.shape, generator=gen, dtype=D)
    else:
        s = scale * torch.randn((length, graph.dim), generator=gen, dtype=D)
    s = f32(s).scatter(-1, xt[:, None], 0.0)
    others = s.scatter(-1, xt[:, None], float("-inf"))
    lse = f32(torch.logsumexp(others, dim=-1))
    ent, loss = lk.draw_loss(graph, noise, t, s, lse, xt, x0)
    summed = graph.score_entropy(s, sigma, xt, x0)
    return {
        "name": name,
        "why": why,
        "graph": "absorb" if graph.absorb else "uniform",
        "tokens": graph.tokens if graph.absorb else graph.dim,
        "noise": spec,
        "t": t,
        "sigma": float(sigma),
        "rate": float(noise.rate(t)),
        "x0": [int(v) for v in x0.tolist()],
        "xt": [int(v) for v in xt.tolist()],
        "log_score": [floats(row) for row in s],
        "lse": floats(lse),
        "entropy": floats(ent),
        "entropy_summed": floats(summed),
        "loss": float(loss),
    }


def entropy_cases():
    gen = torch.Generator().manual_seed(20240318)
    plans = [
        # name, why, graph, noise, t, length, scale, exactish
        ("absorb-loglinear-t0.001", "smallest t: r = 1/(e^sigma - 1) near 1000", rm.Absorbing(5), "loglinear", 1e-3, 8, 1.5, False),
        ("absorb-loglinear-t0.02", "few masks", rm.Absorbing(5), "loglinear", 0.02, 8, 1.5, False),
        ("absorb-loglinear-t0.5", "half masked", rm.Absorbing(5), "loglinear", 0.5, 8, 2.0, False),
        ("absorb-loglinear-t1", "t = 1, sigma = -log(eps)", rm.Absorbing(5), "loglinear", 1.0, 8, 2.0, False),
        ("absorb-loglinear-t0.3-near-exact", "near the true score: small entropies", rm.Absorbing(5), "loglinear", 0.3, 8, 0.05, True),
        ("absorb-loglinear-t0.01-near-exact", "near the true score at small t", rm.Absorbing(5), "loglinear", 0.01, 8, 0.05, True),
        ("absorb-geometric-t0.4", "other schedule", rm.Absorbing(5), "geometric", 0.4, 8, 1.5, False),
        ("absorb-loglinear-n33-t0.7", "larger vocabulary", rm.Absorbing(32), "loglinear", 0.7, 12, 1.5, False),
        ("uniform-geometric-t0.001", "smallest t: sigma near sigma_min", rm.Uniform(5), "geometric", 1e-3, 8, 1.5, False),
        ("uniform-geometric-t0.3", "mid t", rm.Uniform(5), "geometric", 0.3, 8, 1.5, False),
        ("uniform-geometric-t0.7", "large sigma", rm.Uniform(5), "geometric", 0.7, 8, 2.0, False),
        ("uniform-geometric-t1", "t = 1, sigma = sigma_max", rm.Uniform(5), "geometric", 1.0, 8, 2.0, False),
        ("uniform-geometric-t0.5-near-exact", "near the true score", rm.Uniform(5), "geometric", 0.5, 8, 0.05, True),
        ("uniform-loglinear-t0.6", "other schedule", rm.Uniform(5), "loglinear", 0.6, 8, 1.5, False),
        ("uniform-geometric-n33-t0.45", "larger vocabulary", rm.Uniform(33), "geometric", 0.45, 12, 1.5, False),
    ]
    return [entropy_case(gen, *p) for p in plans]


def windows(tokens, length):
    """Non-overlapping windows; the last short one is kept at its own length."""
    return [tokens[i : i + length] for i in range(0, len(tokens), length)]


def tiny_estimate(model_dir):
    with open(os.path.join(model_dir, "sedd.json"), encoding="utf-8") as f:
        man = json.load(f)
    src = man.get("source") or {}
    if src.get("kind") != "random-init":
        raise SystemExit(f"{model_dir}: source kind {src.get('kind')!r}, need a random-init export to rebuild the network")
    loaded = checkpoints.load_random(src["shape"], src["seed"], man["graph"])
    sedd = loaded.model
    # The rebuilt network must be the exported one: compare with the export's goldens.
    score_fn = lk.model_score_fn(sedd)
    worst = 0.0
    _, cases = golden.read_golden(model_dir)
    for case in cases:
        s, _ = score_fn(torch.as_tensor(case["indices"]), torch.as_tensor(case["sigma"]))
        ref = torch.as_tensor(case["log_score"]).to(D).reshape(s.shape)
        worst = max(worst, (s - ref).abs().max().item() / max(1.0, ref.abs().max().item()))
    if worst > 1e-6:
        raise SystemExit(f"rebuilt network differs from {model_dir}'s goldens by {worst:g}")
    graph, noise = lk.graph_and_noise(man)
    tokens = list(TEXT.encode("utf-8"))
    length = int(man["length"])
    out = []
    nats, var = 0.0, 0.0
    for w, win in enumerate(windows(tokens, length)):
        est = lk.estimate(score_fn, graph, noise, torch.tensor(win), E2E_TIMESTEPS, sampling="stratified", seed=E2E_SEED + w)
        out.append({"tokens": est["tokens"], "nats": est["nats"], "stderr": est["stderr"]})
        nats += est["nats"]
        var += est["stderr"] ** 2
    return {
        "format": 1,
        "generator": "export/make_likelihood_golden.py (seddpy.likelihood, float64 maths, float32 network)",
        "model": os.path.relpath(model_dir, ROOT).replace(os.sep, "/"),
        "source": src,
        "golden_max_rel_diff": worst,
        "text": TEXT,
        "tokens": tokens,
        "length": length,
        "last_window": "keep",
        "timesteps": E2E_TIMESTEPS,
        "sampling": "stratified",
        "eps": lk.SAMPLING_EPS,
        "windows": out,
        "nats": nats,
        "stderr": math.sqrt(var),
        "nats_per_token": nats / len(tokens),
    }


def tolerance(name, path):
    """The tolerance of the number at path of golden file name (seddpy.goldcheck)."""
    if name == "score_entropy.json":
        return goldcheck.FLOAT64  # float64 maths on fixed float32 inputs
    if path == "golden_max_rel_diff":
        return goldcheck.MEASURED  # this machine's rebuild error, gated at 1e-6 above
    if path == "eps":
        return goldcheck.FLOAT64
    return goldcheck.FLOAT32_NETWORK  # estimates from the float32 network


def stale(files, out_dir):
    """{path: differences} for each file of files ({name: document}) that differs from the
    committed copy in out_dir beyond its tolerances (or is missing)."""
    out = {}
    for name, doc in files.items():
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            out[path] = ["missing"]
            continue
        with open(path, encoding="utf-8") as f:
            committed = json.load(f)
        diffs = goldcheck.differences(doc, committed, lambda p, name=name: tolerance(name, p))
        if diffs:
            out[path] = diffs
    return out


def build(model_dirs):
    """The golden documents, {file name: document}."""
    files = {"score_entropy.json": {"format": 1, "generator": "export/make_likelihood_golden.py (seddpy.likelihood, float64)",
                                    "cases": entropy_cases()}}
    for model_dir in model_dirs:
        name = os.path.basename(os.path.normpath(model_dir)) + "-estimate.json"
        if os.path.exists(os.path.join(model_dir, "sedd.json")):
            files[name] = tiny_estimate(model_dir)
        else:
            print(f"no export at {model_dir}: skipping {name}", file=sys.stderr)
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--model-dir", action="append", help="tiny random-init export (repeatable; default: both committed ones)")
    ap.add_argument("--check", action="store_true", help="fail if the committed files differ beyond the tolerances of seddpy.goldcheck")
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = build(args.model_dir or MODEL_DIRS)
    if args.check:
        bad = stale(files, args.out_dir)
        for path, diffs in bad.items():
            print(f"{os.path.relpath(path, ROOT)}:", file=sys.stderr)
            for d in diffs:
                print(f"  {d}", file=sys.stderr)
        if bad:
            sys.exit("stale, rerun export/make_likelihood_golden.py: " + ", ".join(bad))
        return
    os.makedirs(args.out_dir, exist_ok=True)
    for name, doc in files.items():
        path = os.path.join(args.out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
