"""Golden files of an export: PyTorch input/output pairs that the Go side compares ONNX Runtime with.

golden.json (format 1, see docs/DESIGN.md) lists cases with their inputs inline and points into
golden.bin, raw little-endian float32: for each case log_score (batch*length*N values) then
log_score_lse (batch*length values); offsets in bytes, counts in float32 values.
"""

import json
import os

import numpy as np
import torch

from .hashes import file_sha256
from .model import ScoreWithLSE

FORMAT = 1
TOLERANCE = 1e-4
# golden.bin budget: small vocabularies get many long cases, GPT-2-sized ones a few short ones.
SMALL_VOCAB_BUDGET = 4 * 1024 * 1024
LARGE_VOCAB_BUDGET = 8 * 1024 * 1024
LARGE_VOCAB = 32768


def _plan(length, absorb):
    """Candidate cases in priority order: (name, batch, length, sigma list, mask fraction)."""
    mask = (lambda f: f) if absorb else (lambda f: 0.0)
    tag = (lambda f: ("masked" if f < 1 else "all-masked") if absorb and f > 0 else "random")
    plan = [
        (1, 1, [1e-4], 0.0),
        (2, 7, [0.01, 10.0], mask(0.5)),
        (3, 5, [0.4999, 0.5, 2.0], mask(0.3)),
        (1, 8, [10.0], mask(1.0)),
        (1, length, [1.0], 0.0),
        (3, length, [1e-4, 0.1, 5.0], mask(0.4)),
        (2, 2 * length, [0.3, 3.0], mask(0.2)),
        (1, length, [10.0], mask(1.0)),
    ]
    out = []
    for batch, n, sigma, frac in plan:
        name = f"b{batch}-l{n}-{tag(frac)}-sigma-" + "-".join(f"{s:g}" for s in sigma)
        out.append((name, batch, n, sigma, frac))
    return out


def make_cases(sedd, length, seed=0, budget=None):
    """Builds the golden cases for sedd at trained length `length`: inputs drawn with a seeded
    generator, outputs from ScoreWithLSE in float32 under no_grad. Returns a list of dicts with
    name, batch, length, indices (int64 tensor), sigma (float32 tensor), log_score, log_score_lse.
    Cases that would push golden.bin past the budget are skipped (the first always stays)."""
    n_out = sedd.vocab_size
    absorb = sedd.absorb
    tokens = n_out - 1 if absorb else n_out
    if budget is None:
        budget = LARGE_VOCAB_BUDGET if n_out > LARGE_VOCAB else SMALL_VOCAB_BUDGET
    gen = torch.Generator().manual_seed(seed)
    module = ScoreWithLSE(sedd.float().eval()).eval()
    cases, used = [], 0
    for name, batch, n, sigma, frac in _plan(length, absorb):
        size = 4 * batch * n * (n_out + 1)
        if cases and used + size > budget:
            continue
        indices = torch.randint(0, tokens, (batch, n), generator=gen, dtype=torch.int64)
        if frac > 0:
            masked = torch.rand((batch, n), generator=gen) < frac
            if frac >= 1:
                masked[:] = True
            indices = torch.where(masked, torch.full_like(indices, tokens), indices)
        sig = torch.tensor(sigma, dtype=torch.float32)
        with torch.no_grad():
            log_score, lse = module(indices, sig)
        cases.append({"name": name, "batch": batch, "length": n, "indices": indices, "sigma": sig,
                      "log_score": log_score.float().contiguous(), "log_score_lse": lse.float().contiguous()})
        used += size
    return cases


def write_golden(cases, out_dir, json_name="golden.json", data_name="golden.bin"):
    """Writes golden.json and golden.bin for cases (from make_cases); returns
    {"golden", "data", "size", "cases", "golden_sha256", "data_sha256"}."""
    entries = []
    offset = 0
    with open(os.path.join(out_dir, data_name), "wb") as f:
        for c in cases:
            spans = {}
            for key in ("log_score", "log_score_lse"):
                arr = c[key].numpy().astype("<f4", copy=False).ravel()
                f.write(arr.tobytes())
                spans[key] = {"offset": offset, "count": int(arr.size)}
                offset += 4 * arr.size
            entries.append({
                "name": c["name"],
                "batch": c["batch"],
                "length": c["length"],
                "indices": [int(x) for x in c["indices"].reshape(-1).tolist()],
                # float32 values written as the doubles they equal, so they read back exactly.
                "sigma": [float(np.float32(s)) for s in c["sigma"].tolist()],
                **spans,
            })
    doc = {"format": FORMAT, "data": data_name, "tolerance": TOLERANCE, "cases": entries}
    with open(os.path.join(out_dir, json_name), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return {"golden": json_name, "data": data_name, "size": offset, "cases": len(entries),
            "golden_sha256": file_sha256(os.path.join(out_dir, json_name)),
            "data_sha256": file_sha256(os.path.join(out_dir, data_name))}


def read_golden(out_dir, json_name="golden.json"):
    """Reads golden files back: a list of dicts like make_cases returns (numpy arrays)."""
    with open(os.path.join(out_dir, json_name), encoding="utf-8") as f:
        doc = json.load(f)
    raw = np.fromfile(os.path.join(out_dir, doc["data"]), dtype="<f4")
    cases = []
    for e in doc["cases"]:
        c = dict(e)
        for key in ("log_score", "log_score_lse"):
            off, cnt = e[key]["offset"], e[key]["count"]
            if off % 4 or off // 4 + cnt > raw.size:
                raise ValueError(f"golden case {e['name']}: {key} outside the data file")
            c[key] = raw[off // 4: off // 4 + cnt]
        c["indices"] = np.asarray(e["indices"], dtype=np.int64).reshape(e["batch"], e["length"])
        c["sigma"] = np.asarray(e["sigma"], dtype=np.float32)
        cases.append(c)
    return doc, cases
