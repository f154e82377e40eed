"""Reference SEDD maths in float64 torch: noise schedules, graphs, predictor
transition probabilities and score entropy.

This module restates graph_lib.py, noise_lib.py and sampling.py of the reference
repository (louaaron/Score-Entropy-Discrete-Diffusion) formula by formula, in
float64 and without a network, so that the Go package sdk/diffusion can be checked
against exact numbers (export/make_math_golden.py writes them).

Conventions used throughout:

- ``x`` is a LongTensor of positions ``[L]`` (one sequence; rows of a batch are
  independent in every formula here).
- ``log_score`` is a float64 tensor ``[L, N]`` of log ratios
  ``log p(x with x_i := j) / p(x)``, 0 at ``j = x_i``; the reference's sampling score
  function returns ``log_score.exp()``.
- The reference draws every categorical with ``argmax(probs / E)``, ``E ~ Exp(1)``
  (catsample.sample_categorical). For non-negative weights that picks ``j`` with
  probability ``probs_j / sum(probs)``; a negative weight divided by a positive ``E``
  can never beat a positive one, so it acts as 0. :func:`normalise` states exactly
  that distribution.
"""

import torch

DTYPE = torch.float64


# ----------------------------------------------------------------------------- noise


class LogLinearNoise:
    """sigma(t) = -log1p(-(1 - eps) t), sigma'(t) = (1 - eps) / (1 - (1 - eps) t)."""

    def __init__(self, eps=1e-3):
        self.eps = eps

    def total(self, t):
        t = torch.as_tensor(t, dtype=DTYPE)
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t):
        t = torch.as_tensor(t, dtype=DTYPE)
        return (1 - self.eps) / (1 - (1 - self.eps) * t)


class GeometricNoise:
    """sigma(t) = smin^(1-t) smax^t, sigma'(t) = sigma(t) (log smax - log smin)."""

    def __init__(self, sigma_min=1e-3, sigma_max=1.0):
        self.sigmas = torch.tensor([sigma_min, sigma_max], dtype=DTYPE)

    def total(self, t):
        t = torch.as_tensor(t, dtype=DTYPE)
        return self.sigmas[0] ** (1 - t) * self.sigmas[1] ** t

    def rate(self, t):
        t = torch.as_tensor(t, dtype=DTYPE)
        return self.total(t) * (self.sigmas[1].log() - self.sigmas[0].log())


def esigm1(sigma):
    """e^sigma - 1 as the reference computes it: expm1 below 0.5, exp - 1 above."""
    sigma = torch.as_tensor(sigma, dtype=DTYPE)
    return torch.where(sigma < 0.5, torch.expm1(sigma), torch.exp(sigma) - 1)


# ----------------------------------------------------------------------------- graphs


def _one_hot(i, n):
    return torch.nn.functional.one_hot(i, num_classes=n).to(DTYPE)


class Absorbing:
    """Absorbing graph: ``tokens`` ordinary states and the mask ``M = tokens``."""

    absorb = True

    def __init__(self, tokens):
        self.tokens = tokens

    @property
    def dim(self):
        return self.tokens + 1

    @property
    def mask(self):
        return self.tokens

    def rate(self, i):
        """Column i of Q: i -> M with rate 1 (0 for i = M)."""
        return _one_hot(torch.full_like(i, self.mask), self.dim) - _one_hot(i, self.dim)

    def transp_rate(self, i):
        """Row i of Q: M -> every j with rate 1 (diagonal -1 + 1 = 0 at M); -1 at i."""
        edge = -_one_hot(i, self.dim)
        edge[i == self.mask] += 1
        return edge

    def reverse_rate(self, i, score):
        """transp_rate(i) * score, with the diagonal set to minus the off-diagonal sum."""
        r = self.transp_rate(i) * score
        r.scatter_(-1, i[..., None], 0.0)
        r.scatter_(-1, i[..., None], -r.sum(dim=-1, keepdim=True))
        return r

    def transp_transition(self, i, sigma):
        """Row i of exp(sigma Q): e^-sigma at i, plus 1 - e^-sigma everywhere when i = M."""
        sigma = torch.as_tensor(sigma, dtype=DTYPE)
        edge = torch.exp(-sigma) * _one_hot(i, self.dim)
        extra = torch.where(i == self.mask, 1 - torch.exp(-sigma), torch.zeros((), dtype=DTYPE))
        return edge + extra[..., None]

    def staggered_score(self, score, dsigma):
        """e^{dsigma} score, plus (1 - e^{dsigma}) sum(score) on the mask entry."""
        dsigma = torch.as_tensor(dsigma, dtype=DTYPE)
        extra = (1 - torch.exp(dsigma)) * score.sum(dim=-1)
        out = score * torch.exp(dsigma)
        out[..., -1] += extra
        return out

    def sample_limit(self, length):
        return torch.full((length,), self.mask, dtype=torch.long)

    def score_entropy(self, log_score, sigma, x, x0):
        """Per-position score entropy; 0 where x is not the mask."""
        sigma = torch.as_tensor(sigma, dtype=DTYPE)
        rel = x == self.mask
        ratio = 1 / esigm1(sigma)
        out = torch.zeros(x.shape, dtype=DTYPE)
        s = log_score[rel]
        neg = ratio * torch.gather(s, -1, x0[rel][..., None]).squeeze(-1)
        pos = s[:, :-1].exp().sum(dim=-1)
        const = ratio * (ratio.log() - 1)
        out[rel] = pos - neg + const
        return out


class Uniform:
    """Uniform graph: every one of ``dim`` states jumps to every other at rate 1/dim."""

    absorb = False

    def __init__(self, dim):
        self._dim = dim

    @property
    def dim(self):
        return self._dim

    def rate(self, i):
        edge = torch.full((*i.shape, self.dim), 1.0 / self.dim, dtype=DTYPE)
        return edge.scatter(-1, i[..., None], -(self.dim - 1) / self.dim)

    def transp_rate(self, i):
        return self.rate(i)

    def reverse_rate(self, i, score):
        r = self.transp_rate(i) * score
        r.scatter_(-1, i[..., None], 0.0)
        r.scatter_(-1, i[..., None], -r.sum(dim=-1, keepdim=True))
        return r

    def transition(self, i, sigma):
        """Column i of exp(sigma Q): (1 - e^-sigma)/dim off i, the rest on i."""
        sigma = torch.as_tensor(sigma, dtype=DTYPE)
        off = (1 - torch.exp(-sigma)) / self.dim
        trans = torch.ones((*i.shape, self.dim), dtype=DTYPE) * off
        trans = trans.scatter(-1, i[..., None], 0.0)
        return trans.scatter(-1, i[..., None], 1 - trans.sum(dim=-1, keepdim=True))

    def transp_transition(self, i, sigma):
        return self.transition(i, sigma)

    def staggered_score(self, score, dsigma):
        dsigma = torch.as_tensor(dsigma, dtype=DTYPE)
        epow = torch.exp(-dsigma)
        return ((epow - 1) / (self.dim * epow)) * score.sum(dim=-1, keepdim=True) + score / epow

    def sample_limit(self, length, generator=None):
        return torch.randint(0, self.dim, (length,), generator=generator)

    def score_entropy(self, log_score, sigma, x, x0):
        sigma = torch.as_tensor(sigma, dtype=DTYPE)
        em1 = esigm1(sigma)
        ratio = 1 - self.dim / (em1 + self.dim)
        s_x = torch.gather(log_score, -1, x[..., None]).squeeze(-1)
        s_x0 = torch.gather(log_score, -1, x0[..., None]).squeeze(-1)
        neg = log_score.mean(dim=-1) - s_x / self.dim
        neg = torch.where(x == x0, ratio * neg, s_x0 / em1 + neg)
        const = torch.where(
            x == x0,
            (self.dim - 1) / self.dim * ratio * (ratio.log() - 1),
            ((-ratio.log() - 1) / ratio - (self.dim - 2)) / self.dim,
        )
        sexp = log_score.exp()
        pos = sexp.mean(dim=-1) - torch.gather(sexp, -1, x[..., None]).squeeze(-1) / self.dim
        return pos - neg + const


# ----------------------------------------------------------------------------- sampling


def normalise(weights):
    """The distribution of argmax(weights / E), E ~ Exp(1) i.i.d.: negatives count as 0."""
    w = weights.clamp(min=0)
    return w / w.sum(dim=-1, keepdim=True)


def project(x, fixed):
    """Re-impose fixed tokens ({position: token}), as run_sample_cond.py's proj_fun."""
    x = x.clone()
    for pos, tok in (fixed or {}).items():
        x[pos] = tok
    return x


def _fix_output(probs, fixed):
    """Projection after the step: a fixed position ends on its token with certainty."""
    probs = probs.clone()
    for pos, tok in (fixed or {}).items():
        probs[pos] = 0.0
        probs[pos, tok] = 1.0
    return probs


def euler_weights(graph, noise, x, log_score, t, dt):
    """Unnormalised weights of EulerPredictor: one_hot(x) + dt sigma'(t) reverse_rate."""
    score = log_score.exp()
    rev = dt * noise.rate(t) * graph.reverse_rate(x, score)
    return _one_hot(x, graph.dim) + rev


def analytic_weights(graph, noise, x, log_score, t, dt):
    """Unnormalised weights of AnalyticPredictor (staggered score times transp transition)."""
    dsigma = noise.total(t) - noise.total(torch.as_tensor(t, dtype=DTYPE) - dt)
    score = log_score.exp()
    return graph.staggered_score(score, dsigma) * graph.transp_transition(x, dsigma)


def denoise_weights(graph, noise, x, log_score, eps):
    """Unnormalised weights of the Denoiser at t = eps; absorb drops the mask column.

    The dropped column is returned as 0 so that every vector has length N.
    """
    sigma = noise.total(eps)
    score = log_score.exp()
    w = graph.staggered_score(score, sigma) * graph.transp_transition(x, sigma)
    if graph.absorb:
        w = w.clone()
        w[..., -1] = 0.0
    return w


def step_probs(kind, graph, noise, x, log_score, t=None, dt=None, eps=None, fixed=None):
    """Exact next-state distributions [L, N] of one step of ``kind``.

    kind is "euler", "analytic", "none" or "denoise" (denoise uses ``eps``, the others
    ``t`` and ``dt``). ``x`` is projected onto ``fixed`` first; ``log_score`` must be the
    score of the projected ``x``. Fixed positions come out one-hot on their token.
    """
    x = project(x, fixed)
    if kind == "euler":
        w = euler_weights(graph, noise, x, log_score, t, dt)
    elif kind == "analytic":
        w = analytic_weights(graph, noise, x, log_score, t, dt)
    elif kind == "denoise":
        w = denoise_weights(graph, noise, x, log_score, eps)
    elif kind == "none":
        w = _one_hot(x, graph.dim)
    else:
        raise ValueError(f"unknown step kind {kind!r}")
    return _fix_output(normalise(w), fixed)


def sample_categorical(weights, generator=None):
    """The reference's Gumbel-argmax draw (catsample.py), in float64."""
    u = torch.rand(weights.shape, dtype=DTYPE, generator=generator)
    gumbel_norm = 1e-10 - (u + 1e-10).log()
    return (weights / gumbel_norm).argmax(dim=-1)


def time_grid(steps, eps=1e-5):
    """t_k = linspace(1, eps, steps + 1) and dt = (1 - eps) / steps, in float64."""
    return torch.linspace(1, eps, steps + 1, dtype=DTYPE), (1 - eps) / steps


def true_conditional_log_score(graph, sigma, xt, x0):
    """Log ratios p(x_i := j | x0) / p(x_t,i | x0) of the forward process at sigma.

    This is the minimiser of the score entropy for a point-mass data distribution:
    with it, score entropy is exactly 0. Impossible states get -inf.
    """
    sigma = torch.as_tensor(sigma, dtype=DTYPE)
    n = graph.dim
    if graph.absorb:
        p = torch.zeros((xt.shape[0], n), dtype=DTYPE)
        p[torch.arange(xt.shape[0]), x0] = torch.exp(-sigma)
        p[:, graph.mask] += 1 - torch.exp(-sigma)
    else:
        p = torch.full((xt.shape[0], n), float((1 - torch.exp(-sigma)) / n), dtype=DTYPE)
        p[torch.arange(xt.shape[0]), x0] += torch.exp(-sigma)
    px = torch.gather(p, -1, xt[:, None])
    return (p / px).log()


__all__ = [
    "LogLinearNoise",
    "GeometricNoise",
    "Absorbing",
    "Uniform",
    "esigm1",
    "normalise",
    "project",
    "step_probs",
    "euler_weights",
    "analytic_weights",
    "denoise_weights",
    "sample_categorical",
    "time_grid",
    "true_conditional_log_score",
]
