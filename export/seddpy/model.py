"""The SEDD "DDiT" score network, written for export and CPU inference.

Maths and parameter names follow model/transformer.py and model/rotary.py of the
reference repository (louaaron/Score-Entropy-Discrete-Diffusion), so a reference
state_dict loads with strict=True. Differences, none of which change the function:

- plain softmax attention instead of flash-attn (same 1/sqrt(head_dim) scale);
- rotary tables are computed from the input's length every call, so any length runs
  and the ONNX graph keeps a dynamic length axis;
- no dropout (inference only; the reference's inference path has none either);
- expm1 is written through tanh (expm1(x) = 2 tanh(x/2) / (1 - tanh(x/2))): ONNX has no
  Expm1, torch.onnx's dynamo exporter writes torch.expm1 as Exp - 1 (at sigma = 1e-4 that
  made max |ONNX - PyTorch| 1.2e-4 instead of 1.9e-6 on the tiny export) and the TorchScript
  exporter has no symbolic for it at all; tests bound the difference from torch.expm1.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def expm1(x):
    """expm1 through tanh: an exact identity, accurate for small |x|, and exported as such."""
    h = torch.tanh(0.5 * x)
    return 2.0 * h / (1.0 - h)


def log_expm1_sigma(sigma):
    """log(e^sigma - 1) as the reference computes it (expm1 below 0.5, exp - 1 above)."""
    return torch.where(sigma < 0.5, expm1(sigma), sigma.exp() - 1).log()


class LayerNorm(nn.Module):
    """Layer norm without bias, scaled by a learned weight (reference LayerNorm)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones([dim]))
        self.dim = dim

    def forward(self, x):
        x = F.layer_norm(x.float(), [self.dim])
        return x * self.weight[None, None, :]


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of sigma followed by a two-layer MLP (reference names)."""

    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32, device=t.device) / half
        )
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class Rotary(nn.Module):
    """Rotary position embedding; tables computed for whatever length comes in."""

    def __init__(self, dim, base=10_000):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, seq_len_like):
        # seq_len_like: a tensor whose dim 1 is the sequence length.
        t = torch.arange(seq_len_like.shape[1], device=seq_len_like.device).type_as(self.inv_freq)
        freqs = t[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        # shapes [1, seq, 1, head_dim] to broadcast over batch and heads
        return emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x, cos, sin):
    return x * cos + rotate_half(x) * sin


class DDiTBlock(nn.Module):
    def __init__(self, dim, n_heads, cond_dim, mlp_ratio=4):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * dim, dim, bias=True),
        )
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim, bias=True)
        self.adaLN_modulation.weight.data.zero_()
        self.adaLN_modulation.bias.data.zero_()

    def forward(self, x, cos, sin, c):
        b, s, d = x.shape
        h = self.n_heads
        hd = d // h
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        )
        x_skip = x
        y = modulate(self.norm1(x), shift_msa, scale_msa)
        qkv = self.attn_qkv(y).reshape(b, s, 3, h, hd)
        # unbind and chunk rather than slicing: same values, but their backward passes do not
        # allocate a zero-filled gradient the size of qkv per slice (training time on CPU).
        q, k, v = qkv.unbind(2)
        q = apply_rotary(q, cos, sin).transpose(1, 2)  # b h s hd
        k = apply_rotary(k, cos, sin).transpose(1, 2)
        v = v.transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = torch.softmax(att, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, s, d)
        x = x_skip + gate_msa * self.attn_out(y)
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class EmbeddingLayer(nn.Module):
    def __init__(self, dim, vocab_dim):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty((vocab_dim, dim)))
        torch.nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, x):
        return self.embedding[x]


class DDitFinalLayer(nn.Module):
    def __init__(self, hidden_size, out_channels, cond_dim):
        super().__init__()
        self.norm_final = LayerNorm(hidden_size)
        self.linear = nn.Linear(hidden_size, out_channels)
        self.linear.weight.data.zero_()
        self.linear.bias.data.zero_()
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * hidden_size, bias=True)
        self.adaLN_modulation.weight.data.zero_()
        self.adaLN_modulation.bias.data.zero_()

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def _get(cfg, dotted, default=None):
    cur = cfg
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return default
    return cur


class SEDD(nn.Module):
    """The SEDD score network. `config` is the reference's training config as a dict
    (keys tokens, graph.type, model.hidden_size, cond_dim, n_blocks, n_heads,
    scale_by_sigma). forward(indices, sigma) returns log-ratios with zeros at the
    input tokens, exactly as the reference's SEDD.forward."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        graph = _get(config, "graph.type")
        if graph not in ("absorb", "uniform"):
            raise ValueError(f"graph.type must be 'absorb' or 'uniform', got {graph!r}")
        self.absorb = graph == "absorb"
        tokens = int(config["tokens"])
        vocab_size = tokens + (1 if self.absorb else 0)
        m = config["model"]
        hidden, heads = int(m["hidden_size"]), int(m["n_heads"])
        if hidden % heads:
            raise ValueError(f"model.hidden_size {hidden} is not divisible by model.n_heads {heads}")
        self.vocab_size = vocab_size
        self.vocab_embed = EmbeddingLayer(hidden, vocab_size)
        self.sigma_map = TimestepEmbedder(int(m["cond_dim"]))
        self.rotary_emb = Rotary(hidden // heads)
        self.blocks = nn.ModuleList(
            [DDiTBlock(hidden, heads, int(m["cond_dim"])) for _ in range(int(m["n_blocks"]))]
        )
        self.output_layer = DDitFinalLayer(hidden, vocab_size, int(m["cond_dim"]))
        self.scale_by_sigma = bool(m.get("scale_by_sigma", False))
        if self.scale_by_sigma and not self.absorb:
            raise ValueError("model.scale_by_sigma is only defined for the absorb graph (as in the reference)")
        # time_independent (ours, not the reference's): the conditioning sees σ = 0 always, so
        # the output depends on σ only through scale_by_sigma (RADD, arXiv 2406.03736).
        self.time_independent = bool(m.get("time_independent", False))
        if self.time_independent and not self.scale_by_sigma:
            raise ValueError("model.time_independent needs scale_by_sigma (and so the absorb graph)")

    def trunk(self, indices, sigma):
        """The hidden states [batch, length, hidden] before the output layer, and the
        conditioning c [batch, cond]: everything but the output head."""
        x = self.vocab_embed(indices)
        c = F.silu(self.sigma_map(torch.zeros_like(sigma) if self.time_independent else sigma))
        cos, sin = self.rotary_emb(x)
        for block in self.blocks:
            x = block(x, cos, sin, c)
        return x, c

    def forward(self, indices, sigma):
        x, c = self.trunk(indices, sigma)
        x = self.output_layer(x, c)
        if self.scale_by_sigma:
            x = x - log_expm1_sigma(sigma).to(x.dtype)[:, None, None] - math.log(x.shape[-1] - 1)
        return torch.scatter(x, -1, indices[..., None], torch.zeros_like(x[..., :1]))

    def forward_rows(self, indices, sigma, rows):
        """forward(indices, sigma) at the flat positions rows (int64 [R], b * length + i) only:
        [R, N], row k equal to forward(...)[rows[k] // length, rows[k] % length]. The output
        head (final layer norm, projection to N states, scale_by_sigma, the zero at the input
        token) runs on those R rows only; the trunk still runs on every position, which
        attention needs."""
        x, c = self.trunk(indices, sigma)
        b, length, d = x.shape
        batch_of = torch.div(rows, length, rounding_mode="floor")
        h = x.reshape(b * length, d).index_select(0, rows)[None]  # [1, R, d]
        shift, scale = self.output_layer.adaLN_modulation(c).chunk(2, dim=1)  # [batch, d] each
        shift, scale = shift.index_select(0, batch_of)[None], scale.index_select(0, batch_of)[None]
        out = self.output_layer.linear(modulate(self.output_layer.norm_final(h), shift, scale))[0]  # [R, N]
        if self.scale_by_sigma:
            term = log_expm1_sigma(sigma).to(out.dtype).index_select(0, batch_of)
            out = out - term[:, None] - math.log(out.shape[-1] - 1)
        tok = indices.reshape(b * length).index_select(0, rows)
        return torch.scatter(out, -1, tok[:, None], torch.zeros_like(out[:, :1])), tok


class ScoreWithLSE(nn.Module):
    """What model.onnx computes: (log_score, log_score_lse) per ONNX-CONTRACT.md.
    log_score_lse[b, i] = log sum_{j != x_i} exp(log_score[b, i, j])."""

    def __init__(self, sedd):
        super().__init__()
        self.sedd = sedd

    def forward(self, indices, sigma):
        s = self.sedd(indices, sigma)
        return s, log_sum_exp_off(s, indices)


class ScoreRowsWithLSE(nn.Module):
    """What model.onnx computes since the rows input (ONNX-CONTRACT.md): (log_score [R, N],
    log_score_lse [R]) at the flat positions rows (int64 [R], b * length + i) of indices
    [batch, length]; rows = 0 .. batch*length-1 gives ScoreWithLSE's outputs, flattened."""

    def __init__(self, sedd):
        super().__init__()
        self.sedd = sedd

    def forward(self, indices, sigma, rows):
        s, tok = self.sedd.forward_rows(indices, sigma, rows)
        return s, log_sum_exp_off(s, tok)


def log_sum_exp_off(s, indices):
    """log Σ_{j != indices} exp(s[..., j]) over the last axis of s, indices of s's shape less it."""
    masked = torch.scatter(s, -1, indices[..., None], torch.full_like(s[..., :1], float("-inf")))
    m = masked.max(dim=-1, keepdim=True).values
    return m.squeeze(-1) + torch.log(torch.exp(masked - m).sum(dim=-1))
