"""Our network's state_dict keys and shapes against the reference layout.

The expected keys below are written out from reading model/transformer.py and model/rotary.py of
louaaron/Score-Entropy-Discrete-Diffusion (SEDD, EmbeddingLayer, TimestepEmbedder, Rotary,
DDiTBlock, DDitFinalLayer). Medium is built on the meta device so that nothing is allocated."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from seddpy import checkpoints
from seddpy.model import SEDD


class _MetaFactories(TorchFunctionMode):
    """Puts tensors created without an explicit device on the meta device."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.arange, torch.randn, torch.tensor}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def reference_layout(tokens, absorb, hidden, n_blocks, n_heads, cond):
    """[(key, shape)] of the reference SEDD's state_dict, in registration order."""
    v = tokens + (1 if absorb else 0)
    keys = [
        ("vocab_embed.embedding", (v, hidden)),
        ("sigma_map.mlp.0.weight", (cond, 256)),
        ("sigma_map.mlp.0.bias", (cond,)),
        ("sigma_map.mlp.2.weight", (cond, cond)),
        ("sigma_map.mlp.2.bias", (cond,)),
        ("rotary_emb.inv_freq", (hidden // n_heads // 2,)),
    ]
    for i in range(n_blocks):
        b = f"blocks.{i}."
        keys += [
            (b + "norm1.weight", (hidden,)),
            (b + "attn_qkv.weight", (3 * hidden, hidden)),
            (b + "attn_out.weight", (hidden, hidden)),
            (b + "norm2.weight", (hidden,)),
            (b + "mlp.0.weight", (4 * hidden, hidden)),
            (b + "mlp.0.bias", (4 * hidden,)),
            (b + "mlp.2.weight", (hidden, 4 * hidden)),
            (b + "mlp.2.bias", (hidden,)),
            (b + "adaLN_modulation.weight", (6 * hidden, cond)),
            (b + "adaLN_modulation.bias", (6 * hidden,)),
        ]
    keys += [
        ("output_layer.norm_final.weight", (hidden,)),
        ("output_layer.linear.weight", (v, hidden)),
        ("output_layer.linear.bias", (v,)),
        ("output_layer.adaLN_modulation.weight", (2 * hidden, cond)),
        ("output_layer.adaLN_modulation.bias", (2 * hidden,)),
    ]
    return keys


@pytest.mark.parametrize(
    "shape, hidden, n_blocks, n_heads",
    [("small", 768, 12, 12), ("medium", 1024, 24, 16), ("tiny", 32, 2, 2)],
)
def test_state_dict_matches_reference_layout(shape, hidden, n_blocks, n_heads):
    cfg = checkpoints.shape_config(shape)
    with _MetaFactories():
        model = SEDD(cfg)
    got = [(k, tuple(t.shape)) for k, t in model.state_dict().items()]
    want = reference_layout(cfg["tokens"], True, hidden, n_blocks, n_heads, cfg["model"]["cond_dim"])
    assert got == want
    # The EMA maps shadow parameters by position: parameter order must be the reference's too.
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == [k for k, _ in want if k != "rotary_emb.inv_freq"]


def test_published_shapes():
    small = checkpoints.shape_config("small")
    assert small["tokens"] == 50257 and small["graph"]["type"] == "absorb"
    assert small["noise"]["type"] == "loglinear"
    assert {k: small["model"][k] for k in ("hidden_size", "n_blocks", "n_heads", "cond_dim", "length", "scale_by_sigma")} == {
        "hidden_size": 768, "n_blocks": 12, "n_heads": 12, "cond_dim": 128, "length": 1024, "scale_by_sigma": True}
    medium = checkpoints.shape_config("medium")
    assert (medium["model"]["hidden_size"], medium["model"]["n_blocks"], medium["model"]["n_heads"]) == (1024, 24, 16)
    uni = checkpoints.shape_config("tiny", "uniform")
    assert uni["graph"]["type"] == "uniform" and uni["model"]["scale_by_sigma"] is False
    assert uni["noise"] == {"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20}
    # shape_config hands out copies: editing one must not change the table.
    uni["model"]["hidden_size"] = 1
    assert checkpoints.shape_config("tiny")["model"]["hidden_size"] == 32


def test_small_parameter_count():
    cfg = checkpoints.shape_config("small")
    with _MetaFactories():
        model = SEDD(cfg)
    want = sum(
        int(torch.tensor(s).prod()) for k, s in reference_layout(50257, True, 768, 12, 12, 128) if k != "rotary_emb.inv_freq"
    )
    assert checkpoints.count_params(model) == want


def test_rotary_buffer_keeps_computed_value():
    model = checkpoints.load_random("tiny", 3).model
    hd = 32 // 2
    want = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    assert torch.equal(model.rotary_emb.inv_freq, want)
    # Random init also fills the reference's zero-initialised layers.
    assert model.output_layer.linear.weight.abs().sum() > 0
    assert model.blocks[0].adaLN_modulation.bias.abs().sum() > 0


def test_random_init_is_seeded():
    a = checkpoints.load_random("tiny", 5).model.state_dict()
    b = checkpoints.load_random("tiny", 5).model.state_dict()
    c = checkpoints.load_random("tiny", 6).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["vocab_embed.embedding"], c["vocab_embed.embedding"])


def test_tanh_expm1_matches_torch():
    from seddpy.model import expm1

    x = torch.logspace(-6, torch.log10(torch.tensor(0.5)).item(), 20001, dtype=torch.float32)
    got = expm1(x)
    want = torch.expm1(x)
    rel = ((got - want).abs() / want.abs()).max().item()
    assert rel <= 1e-6, rel
