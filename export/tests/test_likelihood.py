"""seddpy.likelihood: the reference likelihood bound behind sdk/internal/likelihood's goldens."""

import math
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from seddpy import likelihood as lk  # noqa: E402
from seddpy import refmath as rm  # noqa: E402

D = torch.float64

GRAPHS = {
    "absorb": (rm.Absorbing(5), rm.LogLinearNoise(1e-3)),
    "uniform": (rm.Uniform(5), rm.GeometricNoise(1e-4, 20.0)),
}


def random_draw(graph, noise, t, length, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    limit = graph.tokens if graph.absorb else graph.dim
    x0 = torch.randint(0, limit, (length,), generator=g)
    xt = lk.corrupt(graph, x0, noise.total(t), g)
    s = (scale * torch.randn((length, graph.dim), generator=g, dtype=D)).scatter(-1, xt[:, None], 0.0)
    return x0, xt, s


def exact_lse(s, xt):
    return torch.logsumexp(s.scatter(-1, xt[:, None], float("-inf")), dim=-1)


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
@pytest.mark.parametrize("t", [1e-3, 0.1, 0.5, 0.9, 1.0])
def test_lse_form_is_the_reference_formula(graph_name, t):
    graph, noise = GRAPHS[graph_name]
    for seed in range(4):
        x0, xt, s = random_draw(graph, noise, t, 16, seed)
        sigma = noise.total(t)
        got = lk.score_entropy_lse(graph, s, exact_lse(s, xt), sigma, xt, x0)
        want = graph.score_entropy(s, sigma, xt, x0)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
        assert (want >= -1e-9).all(), "score entropy must be non-negative"


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_true_score_has_zero_entropy(graph_name):
    graph, noise = GRAPHS[graph_name]
    for t in (0.05, 0.5, 0.95):
        x0, xt, _ = random_draw(graph, noise, t, 16, 3)
        s = rm.true_conditional_log_score(graph, noise.total(t), xt, x0)
        s = torch.where(torch.isinf(s), torch.full_like(s, -200.0), s)
        ent = graph.score_entropy(s, noise.total(t), xt, x0)
        assert ent.abs().max() < 1e-9


def test_draw_loss_is_rate_times_sum():
    graph, noise = GRAPHS["absorb"]
    x0, xt, s = random_draw(graph, noise, 0.4, 12, 1)
    ent, loss = lk.draw_loss(graph, noise, 0.4, s, exact_lse(s, xt), xt, x0)
    assert math.isclose(float(loss), float(noise.rate(0.4) * ent.sum()), rel_tol=1e-15)
    assert (ent[xt != graph.mask] == 0).all()


@pytest.mark.parametrize(
    "values,sampling,mean,se",
    [
        ([1, 2, 3, 4], "stratified", 2.5, math.sqrt(2) / 4),
        ([1, 3, 2, 2, 5], "stratified", 2.6, math.sqrt(13) / 5),
        ([7, 7, 7, 7], "stratified", 7.0, 0.0),
        ([3], "stratified", 3.0, math.inf),
        ([1, 3, 4, 6, 0, 2], "antithetic", 8 / 3, math.sqrt((4 / 9 + 49 / 9 + 25 / 9) / 2 / 3)),
        ([1, 3], "antithetic", 2.0, math.inf),
    ],
)
def test_mean_stderr_matches_go(values, sampling, mean, se):
    m, s = lk.mean_stderr(values, sampling)
    assert math.isclose(m, mean, rel_tol=1e-12)
    assert s == se or math.isclose(s, se, rel_tol=1e-12)


def test_timesteps():
    g = torch.Generator().manual_seed(0)
    k, eps = 16, 1e-3
    t = lk.timesteps(k, "stratified", eps, g)
    lo = eps + (1 - eps) * torch.arange(k, dtype=D) / k
    hi = eps + (1 - eps) * (torch.arange(k, dtype=D) + 1) / k
    assert ((t >= lo) & (t < hi)).all()
    a = lk.timesteps(k, "antithetic", eps, g)
    assert torch.allclose((a[0::2] - eps) + (a[1::2] - eps), torch.full((k // 2,), 1 - eps, dtype=D))
    with pytest.raises(ValueError):
        lk.timesteps(3, "antithetic", eps, g)


def test_corrupt_rates():
    g = torch.Generator().manual_seed(1)
    x0 = torch.zeros(200_000, dtype=torch.long) + 2
    sigma = 0.7
    move = 1 - math.exp(-sigma)
    xa = lk.corrupt(rm.Absorbing(5), x0, sigma, g)
    assert abs((xa == 5).double().mean().item() - move) < 0.005
    assert set(xa.unique().tolist()) == {2, 5}
    xu = lk.corrupt(rm.Uniform(5), x0, sigma, g)
    # a move lands on each state with probability 1/5, itself included
    assert abs((xu != 2).double().mean().item() - move * 4 / 5) < 0.005


def independent_score_fn(logp, graph):
    """Exact scores of a distribution with independent positions (absorbing graph)."""

    def score(x, sigma):
        b, length = x.shape
        n = graph.dim
        out = torch.zeros((b, length, n), dtype=D)
        for r in range(b):
            sg = sigma[r].to(D)
            keep = torch.exp(-sg)
            q = torch.cat([keep * logp.exp(), torch.full((length, 1), 1 - keep.item(), dtype=D)], dim=1)
            px = torch.gather(q, -1, x[r][:, None])
            out[r] = (q / px).log()
        return out, None

    return score


def test_estimate_known_answer_absorb():
    """Exact scores: E[estimate] = (e^{-sigma(eps_l)} - e^{-sigma(1)}) * NLL (see sdk/internal/likelihood)."""
    torch.manual_seed(0)
    graph, noise = rm.Absorbing(6), rm.LogLinearNoise(1e-3)
    length = 128
    g = torch.Generator().manual_seed(2)
    logp = torch.log_softmax(1.5 * torch.randn((length, 6), generator=g, dtype=D), dim=-1)
    x0 = torch.multinomial(logp.exp(), 1, generator=g).squeeze(-1)
    nll = -logp.gather(-1, x0[:, None]).sum().item()
    want = (math.exp(-noise.total(1e-3).item()) - math.exp(-noise.total(1.0).item())) * nll
    est = lk.estimate(independent_score_fn(logp, graph), graph, noise, x0, 200, seed=3, batch=50)
    assert est["stderr"] < 0.03 * nll
    assert abs(est["nats"] - want) < 3 * est["stderr"], (est["nats"], est["stderr"], want)
