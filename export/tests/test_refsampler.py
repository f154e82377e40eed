"""The float32 reference sampler (seddpy/refsampler.py, used for speed comparisons) against the
float64 reference maths (seddpy/refmath.py, behind the Go goldens), and the rebuilding of an
exported network from model.onnx (seddpy/onnx_weights.py)."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from seddpy import refmath as rm  # noqa: E402
from seddpy import refsampler as rs  # noqa: E402
from seddpy.onnx_weights import WeightsError, load_exported  # noqa: E402

TESTDATA = os.path.join(HERE, "..", "..", "sdk", "testdata")

CASES = {
    "absorb": (rs.Absorbing(6), rs.LogLinearNoise(1e-3), rm.Absorbing(5), rm.LogLinearNoise(1e-3)),
    "uniform": (rs.Uniform(6), rs.GeometricNoise(1e-4, 20.0), rm.Uniform(6), rm.GeometricNoise(1e-4, 20.0)),
}


def case(dim, length, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, dim, (length,), generator=g)
    s = 2.0 * torch.randn((length, dim), generator=g, dtype=torch.float64)
    s.scatter_(-1, x[:, None], 0.0)
    return x, s


def fixed_score(log_score):
    """A score_fn that returns exp(log_score) for a batch of one, as get_score_fn(sampling=True)."""
    return lambda x, sigma: log_score.float().exp()[None]


@pytest.mark.parametrize("graph_name", sorted(CASES))
@pytest.mark.parametrize("kind", ["euler", "analytic", "denoise"])
@pytest.mark.parametrize("t", [0.9, 0.5, 0.05])
def test_step_distributions_match_refmath(graph_name, kind, t):
    g32, n32, g64, n64 = CASES[graph_name]
    x, s = case(g64.dim, 9, seed=int(t * 100))
    dt = 0.01
    tt = torch.tensor([[t]])
    if kind == "euler":
        w = rs.euler_probs(g32, n32, fixed_score(s), x[None], tt, dt)[0]
        want = rm.step_probs("euler", g64, n64, x, s, t=t, dt=dt)
    elif kind == "analytic":
        w = rs.analytic_probs(g32, n32, fixed_score(s), x[None], tt, dt)[0]
        want = rm.step_probs("analytic", g64, n64, x, s, t=t, dt=dt)
    else:
        w = rs.denoise_probs(g32, n32, fixed_score(s), x[None], torch.tensor([[1e-5]]))[0]
        if g32.absorb:
            w = torch.cat([w, torch.zeros_like(w[:, :1])], dim=-1)
        want = rm.step_probs("denoise", g64, n64, x, s, eps=1e-5)
    got = rm.normalise(w.double())
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), (got - want).abs().max()


def test_sample_categorical_follows_weights():
    w = torch.tensor([[0.1, 0.0, 0.6, 0.3, -1.0]]).repeat(40000, 1)
    draws = rs.sample_categorical(w, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0], dtype=torch.float64), atol=0.01)


@pytest.mark.parametrize("fixture", ["tiny-absorb", "tiny-uniform"])
@pytest.mark.parametrize("predictor", sorted(rs.PREDICTORS))
def test_pc_sample_on_fixture(fixture, predictor):
    model, man = load_exported(os.path.join(TESTDATA, fixture))
    graph, noise = rs.graph_from_manifest(man), rs.noise_from_manifest(man)
    score = rs.TimedScore(model)
    seen = []
    x = rs.pc_sample(graph, noise, score, 2, 16, 5, predictor=predictor,
                     generator=torch.Generator().manual_seed(1), on_step=lambda i, x: seen.append(i))
    assert x.shape == (2, 16)
    assert int(x.min()) >= 0 and int(x.max()) < man["tokens"]  # no mask left after denoising
    assert seen == list(range(6)) and score.calls == 6 and score.seconds > 0


def test_pc_sample_projector_keeps_prefix():
    model, man = load_exported(os.path.join(TESTDATA, "tiny-absorb"))
    graph, noise = rs.graph_from_manifest(man), rs.noise_from_manifest(man)

    def proj(x):
        x = x.clone()
        x[:, :3] = torch.tensor([7, 8, 9])
        return x

    x = rs.pc_sample(graph, noise, rs.TimedScore(model), 3, 12, 4, projector=proj,
                     generator=torch.Generator().manual_seed(2))
    assert (x[:, :3] == torch.tensor([7, 8, 9])).all()


def test_load_exported_refuses_a_network_that_does_not_match_its_golden(tmp_path):
    src = os.path.join(TESTDATA, "tiny-absorb")
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    with open(dst / "golden.json", encoding="utf-8") as f:
        doc = json.load(f)
    raw = np.fromfile(dst / doc["data"], dtype="<f4")
    first = doc["cases"][0]["log_score"]
    raw[first["offset"] // 4 + 1] += 0.5
    raw.tofile(dst / doc["data"])
    with pytest.raises(WeightsError, match="differs from golden"):
        load_exported(str(dst))


def onnx_sourced_copy(tmp_path, fixture):
    """A copy of a random-init fixture whose sedd.json no longer names its seed, so that
    load_exported must read the weights from model.onnx."""
    dst = tmp_path / fixture
    shutil.copytree(os.path.join(TESTDATA, fixture), dst)
    with open(dst / "sedd.json", encoding="utf-8") as f:
        man = json.load(f)
    man["source"] = {"kind": "training-run", "path": "elsewhere"}
    with open(dst / "sedd.json", "w", encoding="utf-8") as f:
        json.dump(man, f)
    return dst


@pytest.mark.parametrize("fixture", ["tiny-absorb", "tiny-uniform"])
def test_load_exported_reads_weights_from_onnx(tmp_path, fixture):
    from_onnx, _ = load_exported(str(onnx_sourced_copy(tmp_path, fixture)))
    from_seed, _ = load_exported(os.path.join(TESTDATA, fixture))
    a, b = from_onnx.state_dict(), from_seed.state_dict()
    assert a.keys() == b.keys()
    # The ONNX weights are those the exporting machine drew from the seed; torch draws its
    # normal_ initialisation with CPU-specific kernels (AVX2 vs default), which round the
    # same draws differently in the last bits. So: equal to float32 rounding (1e-6 of the
    # tensor's largest entry, 16.8 units of float32 roundoff), not bytes.
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        scale = max(b[k].abs().max().item(), 1e-30)
        assert (a[k] - b[k]).abs().max().item() <= 1e-6 * scale, (k, (a[k] - b[k]).abs().max().item() / scale)


def test_load_exported_refuses_a_graph_with_missing_weights(tmp_path):
    import onnx

    dst = onnx_sourced_copy(tmp_path, "tiny-absorb")
    proto = onnx.load(str(dst / "model.onnx"))
    anon = [i for i in proto.graph.initializer if not i.name.startswith("sedd.")]
    proto.graph.initializer.remove(anon[-1])
    onnx.save(proto, str(dst / "model.onnx"))
    with pytest.raises(WeightsError, match="unnamed initialisers"):
        load_exported(str(dst))
