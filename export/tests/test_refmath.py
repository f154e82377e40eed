"""Invariants of seddpy.refmath, the float64 reference maths behind the Go goldens."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from seddpy import refmath as rm  # noqa: E402

D = torch.float64

GRAPHS = {
    "absorb": (rm.Absorbing(5), rm.LogLinearNoise(1e-3)),
    "uniform": (rm.Uniform(5), rm.GeometricNoise(1e-4, 20.0)),
}


def random_case(graph, length, seed, scale=2.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, graph.dim, (length,), generator=g)
    s = scale * torch.randn((length, graph.dim), generator=g, dtype=D)
    s.scatter_(-1, x[:, None], 0.0)
    return x, s


def mask_half(graph, x):
    if graph.absorb:
        x = x.clone()
        x[::2] = graph.mask
    return x


def with_zero_at(x, s):
    s = s.clone()
    s.scatter_(-1, x[:, None], 0.0)
    return s


CASES = [
    ("euler", dict(t=1.0, dt=0.25)),
    ("euler", dict(t=0.5, dt=0.01)),
    ("analytic", dict(t=1.0, dt=0.25)),
    ("analytic", dict(t=0.3, dt=0.001)),
    ("none", dict(t=0.5, dt=0.1)),
    ("denoise", dict(eps=1e-5)),
    ("denoise", dict(eps=0.2)),
]


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
@pytest.mark.parametrize("kind,kw", CASES)
def test_probabilities_are_distributions(graph_name, kind, kw):
    graph, noise = GRAPHS[graph_name]
    for seed in range(5):
        x, s = random_case(graph, 12, seed)
        x = mask_half(graph, x)
        s = with_zero_at(x, s)
        p = rm.step_probs(kind, graph, noise, x, s, **kw)
        assert p.shape == (12, graph.dim)
        assert torch.all(p >= 0)
        assert torch.allclose(p.sum(-1), torch.ones(12, dtype=D), atol=1e-12)


@pytest.mark.parametrize("kind,kw", CASES)
def test_absorb_unmasked_positions_never_change(kind, kw):
    graph, noise = GRAPHS["absorb"]
    x = torch.tensor([0, 1, 2, 3, 4])
    _, s = random_case(graph, 5, 7)
    s = with_zero_at(x, s)
    p = rm.step_probs(kind, graph, noise, x, s, **kw)
    assert torch.equal(p, torch.nn.functional.one_hot(x, graph.dim).to(D))


def test_absorb_denoise_removes_every_mask():
    graph, noise = GRAPHS["absorb"]
    x = torch.full((6,), graph.mask)
    _, s = random_case(graph, 6, 3)
    s = with_zero_at(x, s)
    p = rm.step_probs("denoise", graph, noise, x, s, eps=1e-5)
    assert torch.all(p[:, graph.mask] == 0)
    # Denoising a mask draws j < M proportionally to exp(s_j).
    want = s[:, :-1].exp() / s[:, :-1].exp().sum(-1, keepdim=True)
    assert torch.allclose(p[:, :-1], want, rtol=1e-12)


@pytest.mark.parametrize("t,dt", [(1.0, 0.5), (1.0, 1e-3), (0.4, 1e-2), (0.01, 1e-3)])
def test_lse_only_formulas(t, dt):
    """The O(1) move/stay decisions the Go sampler uses follow from the dense maths."""
    for name in ("absorb", "uniform"):
        graph, noise = GRAPHS[name]
        x, s = random_case(graph, 8, 11)
        x = mask_half(graph, x)
        s = with_zero_at(x, s)
        S = s.exp().sum(-1) - 1  # sum over j != x_i (entry x_i is exp(0) = 1)
        if graph.absorb:
            rows = x == graph.mask
            euler_move = torch.clamp(dt * noise.rate(t) * S, max=1)
            dsig = noise.total(t) - noise.total(t - dt)
            analytic_move = torch.clamp(torch.expm1(dsig) * S, max=1)
            pa = rm.step_probs("analytic", graph, noise, x, s, t=t, dt=dt)
            stay = pa[torch.arange(8), x]
            assert torch.allclose((1 - stay)[rows], analytic_move[rows], rtol=1e-9, atol=1e-12)
        else:
            rows = torch.ones(8, dtype=torch.bool)
            euler_move = torch.clamp(dt * noise.rate(t) * S / graph.dim, max=1)
        pe = rm.step_probs("euler", graph, noise, x, s, t=t, dt=dt)
        stay = pe[torch.arange(8), x]
        assert torch.allclose((1 - stay)[rows], euler_move[rows], rtol=1e-9, atol=1e-12)
        # Given a move, the target is drawn proportionally to exp(s_j), j != x_i.
        for i in torch.nonzero(rows & (stay < 1)).flatten():
            e = s[i].exp()
            e[x[i]] = 0
            moved = pe[i].clone()
            moved[x[i]] = 0
            assert torch.allclose(moved / moved.sum(), e / e.sum(), rtol=1e-9)


def test_cases_with_clamping_exist():
    """Euler's jump mass exceeds 1 near t = 1, and analytic uniform has negative weights."""
    graph, noise = GRAPHS["absorb"]
    x = torch.full((4,), graph.mask)
    _, s = random_case(graph, 4, 5)
    s = with_zero_at(x, s)
    w = rm.euler_weights(graph, noise, x, s, 1.0, 0.25)
    assert torch.any(w[:, graph.mask] < 0)
    graph, noise = GRAPHS["uniform"]
    x, s = random_case(graph, 8, 5, scale=4.0)
    w = rm.analytic_weights(graph, noise, x, s, 1.0, 0.25)
    assert torch.any(w < 0)


def test_normalise_is_the_gumbel_argmax_distribution():
    """The reference's argmax(w / E) draw has the law of normalise(w), negatives as 0."""
    w = torch.tensor([[0.5, -0.3, 1.2, 0.0, 0.3, -2.0]], dtype=D)
    n = 200_000
    g = torch.Generator().manual_seed(1234)
    draws = rm.sample_categorical(w.expand(n, -1), generator=g)
    freq = torch.bincount(draws, minlength=6).to(D) / n
    p = rm.normalise(w)[0]
    se = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() <= 5 * se + 1e-12), (freq, p)
    assert freq[1] == 0 and freq[3] == 0 and freq[5] == 0


def test_fixed_positions_are_one_hot():
    graph, noise = GRAPHS["uniform"]
    x, s = random_case(graph, 6, 2)
    fixed = {0: 3, 5: 1}
    xp = rm.project(x, fixed)
    s = with_zero_at(xp, s)
    p = rm.step_probs("analytic", graph, noise, x, s, t=0.9, dt=0.1, fixed=fixed)
    assert p[0, 3] == 1 and p[5, 1] == 1
    free = rm.step_probs("analytic", graph, noise, xp, s, t=0.9, dt=0.1)
    assert torch.equal(p[1:5], free[1:5])


@pytest.mark.parametrize("sigma", [1e-4, 0.3, 0.7, 2.0, 8.0])
@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_score_entropy_zero_at_true_score_and_nonnegative(graph_name, sigma):
    graph = GRAPHS[graph_name][0]
    g = torch.Generator().manual_seed(99)
    x0 = torch.randint(0, graph.tokens if graph.absorb else graph.dim, (10,), generator=g)
    if graph.absorb:
        xt = x0.clone()
        xt[::2] = graph.mask
    else:
        xt = x0.clone()
        xt[::2] = (x0[::2] + 1 + torch.randint(0, graph.dim - 1, (5,), generator=g)) % graph.dim
        assert torch.all(xt[::2] != x0[::2])
    true = rm.true_conditional_log_score(graph, sigma, xt, x0)
    ent = graph.score_entropy(true, sigma, xt, x0)
    assert torch.allclose(ent, torch.zeros(10, dtype=D), atol=1e-9 * max(1.0, 1 / sigma)), ent
    for seed in range(20):
        noisy = true + 0.5 * torch.randn(true.shape, generator=g, dtype=D)
        noisy = torch.where(torch.isfinite(true), noisy, torch.full_like(true, -3.0))
        noisy = with_zero_at(xt, noisy)
        e = graph.score_entropy(noisy, sigma, xt, x0)
        assert torch.all(e >= -1e-12), e
        assert e.sum() > 0
    if graph.absorb:
        assert torch.all(graph.score_entropy(noisy, sigma, xt, x0)[1::2] == 0)


def test_noise_schedules():
    ll = rm.LogLinearNoise(1e-3)
    t = torch.tensor(0.37, dtype=D)
    h = 1e-6
    assert torch.isclose((ll.total(t + h) - ll.total(t - h)) / (2 * h), ll.rate(t), rtol=1e-7)
    assert torch.isclose(ll.total(1.0), torch.tensor(-torch.log(torch.tensor(1e-3, dtype=D)).item(), dtype=D))
    geo = rm.GeometricNoise(1e-4, 20.0)
    assert torch.isclose((geo.total(t + h) - geo.total(t - h)) / (2 * h), geo.rate(t), rtol=1e-7)
    assert torch.isclose(geo.total(0.0), torch.tensor(1e-4, dtype=D))
    grid, dt = rm.time_grid(4, 1e-5)
    assert grid[0] == 1 and grid[-1] == 1e-5 and abs(dt - (1 - 1e-5) / 4) < 1e-18


@pytest.mark.parametrize("t,dt", [(0.9, 0.01), (0.5, 0.125), (0.2, 0.1), (1.0, 0.25)])
def test_absorb_loglinear_euler_equals_analytic(t, dt):
    """With the log-linear schedule, e^{sigma(t) - sigma(t - dt)} - 1 = dt sigma'(t) exactly,
    so the absorbing graph's Euler and analytic steps are one and the same distribution (the
    step-count sweep shows their curves on top of each other). Geometric noise breaks this."""
    graph, noise = GRAPHS["absorb"]
    x, s = random_case(graph, 12, seed=int(100 * t), scale=0.5)
    x = mask_half(graph, x)
    s.scatter_(-1, x[:, None], 0.0)
    euler = rm.step_probs("euler", graph, noise, x, s, t=t, dt=dt)
    analytic = rm.step_probs("analytic", graph, noise, x, s, t=t, dt=dt)
    assert torch.allclose(euler, analytic, rtol=0, atol=1e-12)
    # With geometric noise the two differ at second order in dt (checked where nothing clamps).
    geometric = rm.GeometricNoise(1e-4, 20.0)
    e2 = rm.step_probs("euler", graph, geometric, x, s, t=0.5, dt=0.05)
    a2 = rm.step_probs("analytic", graph, geometric, x, s, t=0.5, dt=0.05)
    assert (e2 - a2).abs().max() > 1e-6
