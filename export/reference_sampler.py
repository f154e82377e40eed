#!/usr/bin/env python3
"""Sample from an exported model directory with the reference repository's sampler, timed.

The PyTorch side of the speed comparison in benchmarks/README.md (benchmarks/speed.sh runs
it next to `sedd-bench speed`). The network is rebuilt from the directory (from its seed for
random-init exports, otherwise from model.onnx) and checked against its golden outputs; the
sampler is seddpy/refsampler.py, the reference's loop op for op.

Timing: one warm-up network call outside the clock, then one whole sample (or, with
--stop-after N, its first N steps, from which the whole sample's time is projected and
marked "projected": true). Memory: the
peak resident set while sampling (Linux: VmHWM after resetting it through
/proc/self/clear_refs once the model is loaded and warm) and over the whole process.

  .venv/bin/python export/reference_sampler.py --model out/sedd-small-random \\
      --steps 64 --length 1024 --threads 2 --json
"""

import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seddpy import refsampler  # noqa: E402
from seddpy.onnx_weights import WeightsError, load_exported  # noqa: E402


def reset_peak_rss():
    """Resets the kernel's peak-RSS mark (VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib():
    """VmHWM of this process in MiB, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="exported model directory (sedd.json, model.onnx, golden)")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--predictor", choices=sorted(refsampler.PREDICTORS), default="analytic")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--length", type=int, default=0, help="default: the model's length")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--stop-after", type=int, default=0,
                    help="time only the first N steps of the --steps schedule and project the whole "
                         "sample from them (for runs too long to wait for; reported as projected)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.length < 0 or args.threads < 1 or args.stop_after < 0:
        ap.error("--steps, --batch and --threads must be >= 1, --length and --stop-after >= 0")
    stop_after = args.stop_after if 0 < args.stop_after < args.steps else 0

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        model, man = load_exported(args.model)
    except (OSError, KeyError, WeightsError) as e:
        print(f"reference_sampler: {e}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    length = args.length or int(man["length"])
    graph = refsampler.graph_from_manifest(man)
    noise = refsampler.noise_from_manifest(man)
    score_fn = refsampler.TimedScore(model)

    gen = torch.Generator().manual_seed(args.seed)
    # Warm-up: one network call at the benchmark's shape, outside the clock.
    score_fn(graph.sample_limit(args.batch, length, generator=gen), torch.ones(args.batch))
    score_fn.seconds, score_fn.calls = 0.0, 0

    can_reset = reset_peak_rss()
    step_times = []
    last = [time.perf_counter()]

    class Stop(Exception):
        pass

    def on_step(i, x):
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now
        if stop_after and len(step_times) >= stop_after:
            raise Stop

    start = time.perf_counter()
    last[0] = start
    x = None
    try:
        x = refsampler.pc_sample(graph, noise, score_fn, args.batch, length, args.steps,
                                 predictor=args.predictor, eps=args.eps, generator=gen, on_step=on_step)
    except Stop:
        pass
    timed_s = time.perf_counter() - start
    # After the reset the kernel's peak (which ru_maxrss also reads) covers the sampling
    # run only; without it, only the whole process's peak is known.
    peak_sampling = peak_rss_mib() if can_reset else None
    process_mib = None if can_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    other = timed_s - score_fn.seconds
    calls = args.steps + 1  # the predictor steps and the denoiser
    out = {
        "impl": "pytorch-reference",
        "torch": torch.__version__,
        "model": man.get("name"),
        "predictor": args.predictor,
        "steps": args.steps,
        "batch": args.batch,
        "length": length,
        "threads": args.threads,
        "network_calls": calls,
        "timed_calls": score_fn.calls,
        "projected": bool(stop_after),
        "load_s": load_s,
        "sample_s": timed_s / score_fn.calls * calls,
        "step_s": timed_s / score_fn.calls,
        "forward_s": score_fn.seconds / score_fn.calls,
        "other_s": other / score_fn.calls,
        "other_share": other / timed_s,
        "peak_rss_sampling_mib": peak_sampling,
        "peak_rss_mib": process_mib,
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:24s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
