"""Is a committed golden file current? Compare numbers within the precision that made them.

A golden file is regenerated and compared with the committed copy. Bytes cannot be the test:
the same script on another CPU, BLAS kernel or PyTorch build rounds differently in the last
bits (torch dispatches its float64 kernels by CPU capability, OpenBLAS picks float32 GEMM
kernels by CPU model). So every number is compared with a tolerance set by the precision of
the arithmetic that produced it, and everything else (token ids, shapes, counts, names, seeds)
must be equal exactly.

The tolerances, |fresh - committed| <= rel * |committed| + abs:

FLOAT64: rel 1e-12, abs 1e-13. Values of our float64 reference maths (refmath.json,
    score_entropy.json): chains of a few dozen elementwise float64 operations, each within an
    ulp or two (unit roundoff 2^-53 = 1.1e-16), on O(1) inputs. Measured across torch's CPU
    capabilities (ATEN_CPU_CAPABILITY default, avx2, avx512): at most 8.8e-16 relative, and
    8.2e-14 relative (3e-16 absolute) where a score entropy near zero is a difference of O(1)
    terms. rel 1e-12 is more than 1000 times the worst seen; abs 1e-13 covers the cancellation.

FLOAT32_NETWORK: rel 1e-6, abs 1e-9. Values computed from the outputs of a float32 network
    (the likelihood estimates of the tiny exports). float32 unit roundoff is 2^-24 = 6.0e-8;
    the network's outputs differ between OpenBLAS kernels by up to 4 units (measured 2.4e-7
    between Haswell and SkylakeX kernels), and the estimate, a mean of many score entropies,
    moved by at most 1.4e-10 relative between them. rel 1e-6 = 16.8 units of float32
    roundoff: the worst single output difference times four. A change of the maths, the
    model or the seed moves an estimate by far more (a different seed: about 1e-2).
"""

import argparse
import json
import math
import os
import sys

FLOAT64 = (1e-12, 1e-13)
FLOAT32_NETWORK = (1e-6, 1e-9)
EXACT = (0.0, 0.0)
# A field that is measured on the machine that runs the script rather than a result (for
# example how closely a rebuilt network reproduces the export's golden outputs): its value
# is not compared, only its presence and type.
MEASURED = None


def within(fresh, committed, tol):
    """|fresh - committed| <= rel * |committed| + abs for tol = (rel, abs)."""
    rel, abs_ = tol
    if math.isnan(fresh) or math.isnan(committed):
        return math.isnan(fresh) and math.isnan(committed)
    if math.isinf(fresh) or math.isinf(committed):
        return fresh == committed
    return abs(fresh - committed) <= rel * abs(committed) + abs_


def differences(fresh, committed, tol_of, path="", limit=20):
    """Where two JSON documents differ beyond their tolerances.

    tol_of(path) gives the tolerance of the number at path (a dotted path such as
    "windows[2].nats"): one of the tuples above, or MEASURED. Non-numbers, and integers on
    both sides, must be equal. Returns at most limit readable differences.
    """
    out = []

    def walk(a, b, p):
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                out.append(f"{p or '.'}: keys {sorted(a)} != committed {sorted(b)}")
                return
            for k in a:
                walk(a[k], b[k], f"{p}.{k}" if p else k)
            return
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{p}: {len(a)} entries != committed {len(b)}")
                return
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{p}[{i}]")
            return
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if numbers and (isinstance(a, float) or isinstance(b, float)):
            tol = tol_of(p)
            if tol is MEASURED:
                return
            if not within(float(a), float(b), tol):
                gap = abs(float(a) - float(b))
                out.append(f"{p}: {a!r} != committed {b!r} (|diff| {gap:.3g}, allowed {tol[0]:g} rel + {tol[1]:g} abs)")
            return
        if type(a) is not type(b) or a != b:
            out.append(f"{p}: {a!r} != committed {b!r} (must be equal)")

    walk(fresh, committed, path)
    return out


def moved(doc, path, tol, factor):
    """A copy of doc with the number at path (as differences() names it) moved by factor
    times its tolerance tol = (rel, abs): x + factor * (rel * |x| + abs). Tests use it to show
    that a tolerance cannot hide a real change."""
    import copy
    import re

    out = copy.deepcopy(doc)
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    parent = out
    for k in keys[:-1]:
        parent = parent[k]
    x = float(parent[keys[-1]])
    parent[keys[-1]] = x + factor * (tol[0] * abs(x) + tol[1])
    return out


def stale_file(doc, path, tol_of=lambda _: FLOAT64):
    """Differences between doc and the committed JSON file at path beyond the tolerances
    tol_of gives (numbers) or at all (everything else); ["missing"] without a file."""
    if not os.path.exists(path):
        return ["missing"]
    with open(path, encoding="utf-8") as f:
        committed = json.load(f)
    return differences(doc, committed, tol_of)


def golden_main(description, build, default_out, script):
    """The command line of a script that writes one JSON golden file made by build():
    write it to --out, or with --check fail if the committed copy is stale (float64
    tolerances)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--check", action="store_true", help="fail if the committed file differs beyond float64 rounding")
    args = ap.parse_args()
    doc = build()
    if args.check:
        diffs = stale_file(doc, args.out)
        for d in diffs:
            print(f"  {d}", file=sys.stderr)
        if diffs:
            sys.exit(f"{args.out} is stale: rerun {script}")
        return
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {os.path.normpath(args.out)}")
