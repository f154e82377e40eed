"""The reference repository's sampler, restated in float32 torch for speed comparisons.

This follows sampling.py, graph_lib.py, noise_lib.py and catsample.py of
louaaron/Score-Entropy-Discrete-Diffusion operation by operation (same tensor shapes,
same full-vocabulary ops, same Gumbel-argmax draws), so that timing it measures what the
reference costs, not a re-engineered version of it. The only changes: CPU instead of
CUDA, float32 instead of bfloat16 autocast (CPU bfloat16 matmuls are slower, and the SDK
runs float32), our network class (the same function as the reference's, see model.py),
and timers around the network call. refmath.py holds the same formulas in float64 for
the golden tests; test_refsampler.py checks the two agree.
"""

import time

import torch
import torch.nn.functional as F


class LogLinearNoise:
    def __init__(self, eps=1e-3):
        self.eps = eps

    def __call__(self, t):
        total = -torch.log1p(-(1 - self.eps) * t)
        rate = (1 - self.eps) / (1 - (1 - self.eps) * t)
        return total, rate


class GeometricNoise:
    def __init__(self, sigma_min=1e-3, sigma_max=1.0):
        self.sigmas = torch.tensor([sigma_min, sigma_max])

    def __call__(self, t):
        total = self.sigmas[0] ** (1 - t) * self.sigmas[1] ** t
        return total, total * (self.sigmas[1].log() - self.sigmas[0].log())


def noise_from_manifest(man):
    n = man["noise"]
    if n["type"] == "loglinear":
        return LogLinearNoise(float(n.get("eps", 1e-3)))
    return GeometricNoise(float(n["sigma_min"]), float(n["sigma_max"]))


def sample_categorical(probs, generator=None):
    """catsample.sample_categorical(method="hard")."""
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype)
    gumbel_norm = 1e-10 - (u + 1e-10).log()
    return (probs / gumbel_norm).argmax(dim=-1)


def _unsqueeze_as(x, y):
    return x.view(x.shape + (1,) * (y.ndim - x.ndim))


class Graph:
    """graph_lib.Graph: what both graphs share."""

    def reverse_rate(self, i, score):
        normalized_rate = self.transp_rate(i) * score
        normalized_rate.scatter_(-1, i[..., None], torch.zeros_like(normalized_rate))
        normalized_rate.scatter_(-1, i[..., None], -normalized_rate.sum(dim=-1, keepdim=True))
        return normalized_rate


class Absorbing(Graph):
    absorb = True

    def __init__(self, dim):
        self.dim = dim  # tokens + 1; the mask is dim - 1

    def transp_rate(self, i):
        edge = -F.one_hot(i, num_classes=self.dim)
        edge[i == self.dim - 1] += 1
        return edge

    def transp_transition(self, i, sigma):
        sigma = _unsqueeze_as(sigma, i[..., None])
        edge = (-sigma).exp() * F.one_hot(i, num_classes=self.dim)
        edge += torch.where(i == self.dim - 1, 1 - (-sigma).squeeze(-1).exp(), 0)[..., None]
        return edge

    def staggered_score(self, score, dsigma):
        score = score.clone()
        extra_const = (1 - dsigma.exp()) * score.sum(dim=-1)
        score *= dsigma.exp()[:, None]
        score[..., -1] += extra_const
        return score

    def sample_limit(self, *batch_dims, generator=None):
        return (self.dim - 1) * torch.ones(*batch_dims, dtype=torch.int64)


class Uniform(Graph):
    absorb = False

    def __init__(self, dim):
        self.dim = dim

    def rate(self, i):
        edge = torch.ones(*i.shape, self.dim) / self.dim
        return edge.scatter(-1, i[..., None], -(self.dim - 1) / self.dim)

    def transp_rate(self, i):
        return self.rate(i)

    def transp_transition(self, i, sigma):
        trans = torch.ones(*i.shape, self.dim) * (1 - (-sigma[..., None]).exp()) / self.dim
        trans = trans.scatter(-1, i[..., None], torch.zeros_like(trans))
        return trans.scatter(-1, i[..., None], 1 - trans.sum(dim=-1, keepdim=True))

    def staggered_score(self, score, dsigma):
        dim = score.shape[-1]
        epow = (-dsigma).exp()[..., None]
        return ((epow - 1) / (dim * epow)) * score.sum(dim=-1, keepdim=True) + score / epow

    def sample_limit(self, *batch_dims, generator=None):
        return torch.randint(0, self.dim, batch_dims, generator=generator)


def graph_from_manifest(man):
    tokens = int(man["tokens"])
    return Absorbing(tokens + 1) if man["graph"] == "absorb" else Uniform(tokens)


class TimedScore:
    """mutils.get_score_fn(model, sampling=True): exp of the network's log-scores, timed."""

    def __init__(self, model):
        self.model = model
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, x, sigma):
        start = time.perf_counter()
        with torch.no_grad():
            score = self.model(x, sigma.reshape(-1)).exp()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return score


def euler_probs(graph, noise, score_fn, x, t, step_size):
    """EulerPredictor.update_fn up to its draw: the weights sample_rate draws from."""
    sigma, dsigma = noise(t)
    score = score_fn(x, sigma)
    rev_rate = step_size * dsigma[..., None] * graph.reverse_rate(x, score)
    return F.one_hot(x, num_classes=graph.dim).to(rev_rate) + rev_rate


def analytic_probs(graph, noise, score_fn, x, t, step_size):
    """AnalyticPredictor.update_fn up to its draw."""
    curr_sigma = noise(t)[0]
    next_sigma = noise(t - step_size)[0]
    dsigma = curr_sigma - next_sigma
    score = score_fn(x, curr_sigma)
    stag_score = graph.staggered_score(score, dsigma)
    return stag_score * graph.transp_transition(x, dsigma)


def denoise_probs(graph, noise, score_fn, x, t):
    """Denoiser.update_fn up to its draw (absorb: the mask column dropped)."""
    sigma = noise(t)[0]
    score = score_fn(x, sigma)
    stag_score = graph.staggered_score(score, sigma)
    probs = stag_score * graph.transp_transition(x, sigma)
    if graph.absorb:
        probs = probs[..., :-1]
    return probs


def euler_update(graph, noise, score_fn, x, t, step_size, generator=None):
    return sample_categorical(euler_probs(graph, noise, score_fn, x, t, step_size), generator)


def analytic_update(graph, noise, score_fn, x, t, step_size, generator=None):
    return sample_categorical(analytic_probs(graph, noise, score_fn, x, t, step_size), generator)


def denoise_update(graph, noise, score_fn, x, t, generator=None):
    return sample_categorical(denoise_probs(graph, noise, score_fn, x, t), generator)


PREDICTORS = {"euler": euler_update, "analytic": analytic_update}


def pc_sample(graph, noise, score_fn, batch, length, steps, predictor="analytic", eps=1e-5,
              denoise=True, projector=None, generator=None, on_step=None):
    """sampling.get_pc_sampler(...)(model): the reference's sampling loop.

    projector(x) re-imposes conditioning tokens (run_sample_cond.py's proj_fun);
    on_step(i, x) is called after every step (for timing)."""
    update = PREDICTORS[predictor]
    proj = projector or (lambda x: x)
    with torch.no_grad():
        x = graph.sample_limit(batch, length, generator=generator)
        timesteps = torch.linspace(1, eps, steps + 1)
        dt = (1 - eps) / steps
        for i in range(steps):
            t = timesteps[i] * torch.ones(x.shape[0], 1)
            x = proj(x)
            x = update(graph, noise, score_fn, x, t, dt, generator)
            if on_step is not None:
                on_step(i, x)
        if denoise:
            x = proj(x)
            t = timesteps[-1] * torch.ones(x.shape[0], 1)
            x = denoise_update(graph, noise, score_fn, x, t, generator)
            if on_step is not None:
                on_step(steps, x)
    return x
