"""The SEDD likelihood bound in float64 torch: the reference for sdk/internal/likelihood.

The negative ELBO of a token sequence x0 under a score network s is estimated as

    B(x0) = (1 - eps_l) * mean_k  sigma'(t_k) * sum_i l_i(t_k, x_{t_k}),

with K timesteps t_k in (eps_l, 1), eps_l = 1e-3, one forward corruption x_t of x0 at
sigma(t) per timestep, and l_i the score entropy of graph_lib.py's score_entropy
(seddpy.refmath restates it). This is the reference's training loss (losses.py) averaged
over t instead of sampled once. Times are stratified (t_k = eps_l + (1 - eps_l)(k + u_k)/K)
or antithetic (pairs u, 1 - u); the standard error is the one sdk/internal/likelihood reports
(collapsed strata for stratified times, pair means for antithetic ones).

The Go package draws its random numbers differently, so the two estimates are independent
draws of the same quantity: they agree within their combined standard errors.
"""

import math

import torch

from . import refmath as rm

D = torch.float64
SAMPLING_EPS = 1e-3


def graph_and_noise(manifest):
    """refmath graph and noise of a sedd.json document (dict)."""
    tokens = int(manifest["tokens"])
    graph = rm.Absorbing(tokens) if manifest["graph"] == "absorb" else rm.Uniform(tokens)
    noise = manifest["noise"]
    if noise["type"] == "loglinear":
        return graph, rm.LogLinearNoise(float(noise["eps"]))
    if noise["type"] == "geometric":
        return graph, rm.GeometricNoise(float(noise["sigma_min"]), float(noise["sigma_max"]))
    raise ValueError(f"unknown noise type {noise['type']!r}")


def score_entropy_lse(graph, log_score, lse, sigma, xt, x0):
    """The reference's score entropy [L] with the positive term read from the network's
    log_score_lse output instead of summed: sum_{j != x_i} exp(s_ij) = exp(lse_i).

    For the absorbing graph only masked positions count, and there the entry at the mask
    is 0 and excluded, so sum_{j<M} exp(s_ij) = exp(lse_i). For the uniform graph the
    reference's positive term mean_j exp(s_ij) - exp(s_{i,x_i})/N is exp(lse_i)/N. With an
    exact float64 lse this equals refmath's score_entropy (tests check it); with the float32
    lse a model returns, it is what sdk/internal/likelihood computes from the same inputs.
    """
    sigma = torch.as_tensor(sigma, dtype=D)
    em1 = rm.esigm1(sigma)
    pos = lse.to(D).exp()
    if graph.absorb:
        rel = xt == graph.mask
        ratio = 1 / em1
        s_x0 = torch.gather(log_score, -1, x0[:, None]).squeeze(-1)
        ent = pos - ratio * s_x0 + ratio * (ratio.log() - 1)
        return torch.where(rel, ent, torch.zeros_like(ent))
    n = graph.dim
    ratio = 1 - n / (em1 + n)
    s_x = torch.gather(log_score, -1, xt[:, None]).squeeze(-1)
    s_x0 = torch.gather(log_score, -1, x0[:, None]).squeeze(-1)
    neg = log_score.mean(dim=-1) - s_x / n
    neg = torch.where(xt == x0, ratio * neg, s_x0 / em1 + neg)
    const = torch.where(
        xt == x0,
        (n - 1) / n * ratio * (ratio.log() - 1),
        ((-ratio.log() - 1) / ratio - (n - 2)) / n,
    )
    return pos / n - neg + const


def draw_loss(graph, noise, t, log_score, lse, xt, x0):
    """(per-position score entropy [L], sigma'(t) * its sum) of one draw, through the LSE."""
    ent = score_entropy_lse(graph, log_score, lse, noise.total(t), xt, x0)
    return ent, noise.rate(t) * ent.sum()


def corrupt(graph, x0, sigma, generator):
    """Forward corruption at total noise sigma, as graph_lib's sample_transition: each
    position moves with probability 1 - e^-sigma, to the mask (absorb) or to a uniformly
    random state, possibly itself (uniform)."""
    move = torch.rand(x0.shape, generator=generator, dtype=D) < -math.expm1(-float(sigma))
    if graph.absorb:
        other = torch.full_like(x0, graph.mask)
    else:
        other = torch.randint(0, graph.dim, x0.shape, generator=generator)
    return torch.where(move, other, x0)


def timesteps(k, sampling, eps, generator):
    """K diffusion times in (eps, 1): stratified or antithetic."""
    if sampling == "stratified":
        u = (torch.arange(k, dtype=D) + torch.rand(k, generator=generator, dtype=D)) / k
    elif sampling == "antithetic":
        if k % 2:
            raise ValueError("antithetic sampling needs an even K")
        half = torch.rand(k // 2, generator=generator, dtype=D)
        u = torch.stack([half, 1 - half], dim=1).reshape(-1)
    else:
        raise ValueError(f"unknown sampling {sampling!r}")
    return eps + (1 - eps) * u


def mean_stderr(values, sampling):
    """Mean of the K draws of one sequence and its standard error (sdk/internal/likelihood's rule).

    stratified: strata collapsed into adjacent pairs (the last group of three when K is odd),
    V = (1/K^2) sum_g m_g/(m_g - 1) sum_{k in g} (y_k - mean_g)^2, conservative;
    antithetic: sample standard deviation of the K/2 pair means over sqrt(K/2).
    """
    y = torch.as_tensor(values, dtype=D)
    k = y.numel()
    mean = y.mean().item()
    if sampling == "antithetic":
        pairs = y.reshape(-1, 2).mean(dim=1)
        if pairs.numel() < 2:
            return mean, math.inf
        return mean, (pairs.std(unbiased=True) / math.sqrt(pairs.numel())).item()
    if k < 2:
        return mean, math.inf
    v, g = 0.0, 0
    while g < k:
        m = 3 if k - g == 3 else 2
        grp = y[g : g + m]
        v += m / (m - 1) * ((grp - grp.mean()) ** 2).sum().item()
        g += m
    return mean, math.sqrt(v) / k


def model_score_fn(sedd):
    """A score function (x [B, L] long, sigma [B] float32) -> (log_score, lse) in float64
    from our network (seddpy.model.SEDD), computed in float32 like model.onnx."""
    from .model import ScoreWithLSE

    module = ScoreWithLSE(sedd.float().eval()).eval()

    @torch.no_grad()
    def score(x, sigma):
        s, lse = module(x, sigma.float())
        return s.to(D), lse.to(D)

    return score


@torch.no_grad()
def estimate(score_fn, graph, noise, x0, k, eps=SAMPLING_EPS, sampling="stratified", seed=0, batch=16):
    """Estimates the bound of one sequence x0 [L] with K timesteps.

    Returns a dict with nats (the bound on -log p(x0)), stderr, tokens, timesteps and the
    K draws sigma'(t_k) * sum_i l_i. The score entropy is the reference formula (refmath)
    with the positive term summed in float64 from the log scores.
    """
    gen = torch.Generator().manual_seed(int(seed))
    ts = timesteps(k, sampling, eps, gen)
    draws = torch.zeros(k, dtype=D)
    for start in range(0, k, batch):
        tb = ts[start : start + batch]
        # The network sees sigma as float32; the score entropy uses that same value.
        sig = noise.total(tb).float().to(D)
        xt = torch.stack([corrupt(graph, x0, s, gen) for s in sig])
        log_score, _ = score_fn(xt, sig.float())
        for b in range(xt.shape[0]):
            ent = graph.score_entropy(log_score[b], sig[b], xt[b], x0)
            draws[start + b] = noise.rate(tb[b]) * ent.sum()
    mean, se = mean_stderr(draws, sampling)
    width = 1 - eps
    return {
        "nats": width * mean,
        "stderr": width * se,
        "tokens": int(x0.numel()),
        "timesteps": k,
        "draws": [float(v) for v in draws],
    }


__all__ = [
    "SAMPLING_EPS",
    "graph_and_noise",
    "score_entropy_lse",
    "draw_loss",
    "corrupt",
    "timesteps",
    "mean_stderr",
    "model_score_fn",
    "estimate",
]
