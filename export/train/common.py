"""Pieces shared by the SEDD and autoregressive training scripts: token data, EMA, schedules."""

import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.dirname(HERE)
if EXPORT not in sys.path:
    sys.path.insert(0, EXPORT)


def load_ids(data_dir, split):
    """The split's token stream (documents joined by <|endoftext|>) as int64 numpy."""
    return np.load(os.path.join(data_dir, split + ".ids.npy")).astype(np.int64)


def fixed_blocks(ids, length):
    """Cuts the stream into consecutive non-overlapping blocks; the tail shorter than length is dropped."""
    n = len(ids) // length
    return torch.from_numpy(ids[: n * length].reshape(n, length).copy())


class RandomBlocks:
    """Training batches: blocks of `length` tokens at uniformly random offsets of the stream."""

    def __init__(self, ids, length, batch, seed):
        self.ids = torch.from_numpy(ids)
        self.length = length
        self.batch = batch
        self.gen = torch.Generator().manual_seed(seed)

    def next(self):
        starts = torch.randint(0, len(self.ids) - self.length, (self.batch,), generator=self.gen)
        idx = starts[:, None] + torch.arange(self.length)[None, :]
        return self.ids[idx]


class EMA:
    """Exponential moving average of parameters with the reference's num_updates warm-up:
    decay_k = min(decay, (1 + k) / (10 + k)). state_dict matches the reference's layout."""

    def __init__(self, params, decay):
        self.decay = decay
        self.num_updates = 0
        self.shadow_params = [p.detach().clone() for p in params if p.requires_grad]

    @torch.no_grad()
    def update(self, params):
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow_params, [p for p in params if p.requires_grad]):
            s.sub_((1.0 - d) * (s - p))

    @torch.no_grad()
    def copy_to(self, params):
        for s, p in zip(self.shadow_params, [p for p in params if p.requires_grad]):
            p.copy_(s)

    def state_dict(self):
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow_params": self.shadow_params}


def lr_at(step, progress, base, warmup, final_frac=0.1):
    """Linear warm-up over the first `warmup` steps, then cosine decay in `progress`
    (0 → 1, the fraction of the run done) down to final_frac * base."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Log:
    """Prints and appends to a log file, flushing each line."""

    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8")

    def __call__(self, msg):
        print(msg, flush=True)
        self.f.write(msg + "\n")
        self.f.flush()
