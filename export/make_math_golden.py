"""Writes sdk/diffusion/testdata/refmath.json: exact SEDD maths from seddpy.refmath.

The Go package sdk/diffusion checks its noise schedules, its dense transition
probabilities (one euler, analytic, none or denoise step of one sequence) and its
score entropy against these numbers. Inputs are small (absorb: 5 tokens, N = 6;
uniform: N = 5) and drawn from a fixed seed, so the file is deterministic:

    .venv/bin/python export/make_math_golden.py            # rewrite the file
    .venv/bin/python export/make_math_golden.py --check    # fail if it would change

--check compares numbers to float64 rounding (seddpy.goldcheck.FLOAT64: 1e-12 relative),
never bytes: torch's float64 kernels round differently by CPU capability.

Log scores are rounded to float32 (what a model returns) before any maths, so that
Go reads exactly the inputs the expected values were computed from.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seddpy import goldcheck  # noqa: E402
from seddpy import refmath as rm  # noqa: E402

D = torch.float64
EPS_S = 1e-5  # sampling eps: t_k = linspace(1, EPS_S, steps + 1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "diffusion", "testdata", "refmath.json")

NOISES = {
    "loglinear": ({"type": "loglinear", "eps": 1e-3}, rm.LogLinearNoise(1e-3)),
    "geometric": ({"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20.0}, rm.GeometricNoise(1e-4, 20.0)),
}


def make_graph(kind):
    if kind == "absorb":
        return rm.Absorbing(5)
    return rm.Uniform(5)


def f32_log_scores(gen, x, n, scale):
    s = (scale * torch.randn((x.shape[0], n), generator=gen, dtype=D)).float().to(D)
    return s.scatter(-1, x[:, None], 0.0)


def floats(t):
    return [float(v) for v in t.flatten().tolist()]


def noise_cases():
    out = []
    for name in sorted(NOISES):
        spec, noise = NOISES[name]
        ts = [0.0, 1e-5, 1e-3, 0.25, 0.5, 0.9, 0.999, 1.0]
        out.append({
            "name": name,
            "noise": spec,
            "t": ts,
            "total": [float(noise.total(t)) for t in ts],
            "rate": [float(noise.rate(t)) for t in ts],
        })
    return out


def transition_cases(gen):
    cases = []
    length = 8
    # (graph, noise, kind, t or None, steps, fixed, log-score scale, what it exercises)
    plans = []
    for graph in ("absorb", "uniform"):
        default_noise = "loglinear" if graph == "absorb" else "geometric"
        other_noise = "geometric" if graph == "absorb" else "loglinear"
        for kind in ("euler", "analytic"):
            plans += [
                (graph, default_noise, kind, "first", 4, None, 2.0, "t=1, large sigma, few steps"),
                (graph, default_noise, kind, "first", 1024, None, 2.0, "t=1, many steps"),
                (graph, default_noise, kind, 0.5, 16, None, 3.0, "mid time, wide scores"),
                (graph, default_noise, kind, "last", 8, None, 2.0, "last step, t - dt = eps"),
                (graph, default_noise, kind, "last", 1024, None, 1.0, "last step, tiny dsigma"),
                (graph, default_noise, kind, 0.7, 8, "ends", 2.0, "fixed prefix and suffix"),
                (graph, other_noise, kind, 0.8, 4, None, 2.5, "other noise schedule"),
            ]
        plans += [
            (graph, default_noise, "denoise", None, 8, None, 2.0, "denoiser at eps"),
            (graph, default_noise, "denoise", None, 8, "span", 3.0, "denoiser with a fixed span"),
            (graph, default_noise, "none", 0.6, 8, "span", 2.0, "none predictor"),
        ]
    for graph_name, noise_name, kind, tspec, steps, fixedspec, scale, why in plans:
        graph = make_graph(graph_name)
        spec, noise = NOISES[noise_name]
        grid, dt = rm.time_grid(steps, EPS_S)
        if tspec == "first":
            t = float(grid[0])
        elif tspec == "last":
            t = float(grid[-2])
        elif tspec is None:
            t = None
        else:
            t = float(tspec)
        if graph.absorb:
            x = torch.randint(0, graph.tokens, (length,), generator=gen)
            masked = torch.rand((length,), generator=gen) < 0.6
            masked[1] = True
            masked[2] = False
            x[masked] = graph.mask
        else:
            x = torch.randint(0, graph.dim, (length,), generator=gen)
        fixed = None
        if fixedspec == "ends":
            fixed = {0: 2, 1: 4, length - 1: 1}
        elif fixedspec == "span":
            fixed = {3: 0, 4: 3, 5: 3}
        xp = rm.project(x, fixed)
        s = f32_log_scores(gen, xp, graph.dim, scale)
        kw = {"eps": EPS_S} if kind == "denoise" else {"t": t, "dt": dt}
        probs = rm.step_probs(kind, graph, noise, x, s, fixed=fixed, **kw)
        if kind == "euler":
            w = rm.euler_weights(graph, noise, xp, s, t, dt)
        elif kind == "analytic":
            w = rm.analytic_weights(graph, noise, xp, s, t, dt)
        elif kind == "denoise":
            w = rm.denoise_weights(graph, noise, xp, s, EPS_S)
        else:
            w = torch.zeros(1)
        name = f"{graph_name}-{noise_name}-{kind}-" + (
            f"eps{EPS_S:g}" if kind == "denoise" else f"t{t:.6g}-steps{steps}"
        ) + ("" if fixed is None else f"-fixed-{fixedspec}")
        cases.append({
            "name": name,
            "why": why,
            "graph": graph_name,
            "tokens": graph.tokens if graph.absorb else graph.dim,
            "noise": spec,
            "kind": kind,
            "t": t,
            "dt": dt,
            "steps": steps,
            "eps": EPS_S,
            "x": [int(v) for v in x.tolist()],
            "fixed": [] if fixed is None else [[p, tok] for p, tok in sorted(fixed.items())],
            "log_score": [floats(row) for row in s],
            "probs": [floats(row) for row in probs],
            "has_negative_weight": bool((w < 0).any()),
        })
    return cases


def score_entropy_cases(gen):
    cases = []
    length = 8
    for graph_name in ("absorb", "uniform"):
        graph = make_graph(graph_name)
        for sigma in (1e-4, 0.3, 0.7, 2.5, 9.0):
            if graph.absorb:
                x0 = torch.randint(0, graph.tokens, (length,), generator=gen)
                xt = x0.clone()
                xt[torch.tensor([0, 2, 3, 6])] = graph.mask
            else:
                x0 = torch.randint(0, graph.dim, (length,), generator=gen)
                xt = x0.clone()
                moved = torch.tensor([1, 2, 5, 7])
                xt[moved] = (x0[moved] + 1 + torch.randint(0, graph.dim - 1, (4,), generator=gen)) % graph.dim
            s = f32_log_scores(gen, xt, graph.dim, 1.5)
            e = s.exp().scatter(-1, xt[:, None], 0.0)
            lse = e.sum(-1).log()
            ent = graph.score_entropy(s, sigma, xt, x0)
            cases.append({
                "name": f"{graph_name}-sigma{sigma:g}",
                "graph": graph_name,
                "tokens": graph.tokens if graph.absorb else graph.dim,
                "sigma": sigma,
                "x0": [int(v) for v in x0.tolist()],
                "xt": [int(v) for v in xt.tolist()],
                "log_score": [floats(row) for row in s],
                "lse": floats(lse),
                "entropy": floats(ent),
            })
    return cases


def build():
    gen = torch.Generator().manual_seed(20240607)
    return {
        "format": 1,
        "generator": "export/make_math_golden.py (seddpy.refmath, float64)",
        "sampling_eps": EPS_S,
        "noise": noise_cases(),
        "transitions": transition_cases(gen),
        "score_entropy": score_entropy_cases(gen),
    }


def stale(doc, path):
    """Differences between doc and the committed file at path (goldcheck.stale_file)."""
    return goldcheck.stale_file(doc, path)


def main():
    goldcheck.golden_main(__doc__.splitlines()[0], build, OUT, "export/make_math_golden.py")


if __name__ == "__main__":
    main()
