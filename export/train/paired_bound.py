"""Compare two `sedd eval --json` results window by window.

Two runs of `sedd eval` with the same --data, --documents, --timesteps and --seed score the same
windows with the same random times and masks (the draws do not depend on the model), so their
per-window difference is the models' alone. This prints the difference of the bounds (nats per
token) and its standard error over windows, which is far smaller than either run's own error.

Usage:
  python3 export/train/paired_bound.py before.json after.json
"""

import argparse
import json
import math
import sys


def paired(a, b):
    """(mean per-token difference b - a, its standard error over windows, windows)."""
    sa, sb = a.get("sequences") or [], b.get("sequences") or []
    if not sa or len(sa) != len(sb):
        raise ValueError(f"the runs scored {len(sa)} and {len(sb)} windows: run both with the same data and "
                         "options (and --json, which lists the windows)")
    for k in ("timesteps", "seed", "tokens"):
        if a.get(k) != b.get(k):
            raise ValueError(f"the runs differ in {k} ({a.get(k)} against {b.get(k)}): their draws are not paired")
    d = []
    for i, (x, y) in enumerate(zip(sa, sb)):
        if x["tokens"] != y["tokens"]:
            raise ValueError(f"window {i}: {x['tokens']} tokens against {y['tokens']}")
        d.append(y["nats_per_token"] - x["nats_per_token"])
    n = len(d)
    mean = sum(d) / n
    var = sum((v - mean) ** 2 for v in d) / (n - 1) if n > 1 else float("nan")
    # windows are equally long here; the corpus figure is their plain mean
    return mean, math.sqrt(var / n), n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    args = ap.parse_args()
    try:
        with open(args.before, encoding="utf-8") as f:
            a = json.load(f)
        with open(args.after, encoding="utf-8") as f:
            b = json.load(f)
        mean, se, n = paired(a, b)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"paired_bound: {e}")
    print(f"before {a['nats_per_token']:.4f} ± {a['stderr']:.4f}, after {b['nats_per_token']:.4f} ± {b['stderr']:.4f} "
          f"nats/token; after - before {mean:+.4f} ± {se:.4f} (paired over {n} windows)")


if __name__ == "__main__":
    main()
