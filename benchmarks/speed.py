#!/usr/bin/env python3
"""SDK against the PyTorch reference sampler, side by side in one run.

For every model and step count, runs `sedd-bench speed` (the Go SDK through ONNX Runtime) once
per graph of --precisions and export/reference_sampler.py (the reference's sampling loop in
PyTorch) one after the other, each in a fresh process with the same weights, threads, batch,
length, predictor and steps, and writes every measurement to a JSON-lines file and a Markdown
table to stdout.

  .venv/bin/python benchmarks/speed.py --sedd-bench bin/sedd-bench \\
      --model out/sedd-small-random:1:1024 --model models/brown-sedd-small:8:128 \\
      --steps 64,1024 --threads 2 --out benchmarks/results/speed.jsonl

--model DIR:BATCH:LENGTH picks a model and its shape. --reference-stop-after N lets the
reference time only the first N steps of step counts above N and project the whole sample
(marked "projected" in the table): at the sedd-small shape a 1024-step PyTorch sample takes
over two hours on two cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"speed.py: {cmd[0]} failed with status {proc.returncode}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if len(rows) != 1:
        raise SystemExit(f"speed.py: expected one JSON line from {cmd[0]}, got {len(rows)}")
    rows[0]["process_s"] = time.perf_counter() - start
    return rows[0]


def fmt_s(s):
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s" if s >= 10 else f"{s:.2f} s"


def fmt_mib(v):
    return "n/a" if v is None else f"{v:,.0f} MiB"


def impl_key(r):
    """The implementation of a row: the PyTorch reference, or the SDK with its graph."""
    if r["impl"] != "sedd-go":
        return r["impl"]
    return "sedd-go:" + r.get("variant", "reference")


def impl_name(r):
    if r["impl"] != "sedd-go":
        return "PyTorch reference"
    v = r.get("variant", "reference")
    return "SDK (Go, ONNX Runtime)" + ("" if v == "reference" else f", {v}")


def table(rows):
    out = [
        "| model | steps | implementation | whole sample | per step | network per step | "
        "rest per step | rest share | Go allocations per step | peak RSS while sampling | vs SDK model.onnx | vs PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {}
    for r in rows:
        by_key.setdefault((r["model"], r["batch"], r["length"], r["steps"]), {})[impl_key(r)] = r
    for (model, batch, length, steps), impls in by_key.items():
        pt = impls.get("pytorch-reference")
        base = impls.get("sedd-go:reference")
        order = sorted(impls, key=lambda k: (k == "pytorch-reference", k != "sedd-go:reference", k))
        for k in order:
            r = impls[k]
            whole = fmt_s(r["sample_s"]) + (" (projected)" if r.get("projected") else "")
            peak = r.get("peak_rss_sampling_mib") or r.get("peak_rss_mib")
            vs_pt = f"**{pt['sample_s'] / r['sample_s']:.2f}× faster**" if pt is not None and r is not pt else ""
            vs_base = f"{r['sample_s'] / base['sample_s']:.2f}× the time" if base is not None and r["impl"] == "sedd-go" else ""
            allocs = f"{r['allocs_per_step']:.1f}" if "allocs_per_step" in r else "–"
            out.append(
                f"| {model} b{batch}×{length} | {steps} | {impl_name(r)} | {whole} | {r['step_s'] * 1e3:,.0f} ms | "
                f"{r['forward_s'] * 1e3:,.0f} ms | {r['other_s'] * 1e3:,.1f} ms | {100 * r['other_share']:.2f} % | "
                f"{allocs} | {fmt_mib(peak)} | {vs_base} | {vs_pt} |"
            )
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sedd-bench", default=os.path.join(ROOT, "bin", "sedd-bench"),
                    help="the sedd-bench binary (cd benchmarks && go build -o ../bin/sedd-bench ./cmd/sedd-bench)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--model", action="append", default=[], help="DIR:BATCH:LENGTH (repeatable)")
    ap.add_argument("--steps", default="64,1024")
    ap.add_argument("--predictor", default="analytic")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference-stop-after", type=int, default=0)
    ap.add_argument("--precisions", default="reference",
                    help="SDK graphs to time, comma-separated (sedd --precision values: reference, fp32, int8, ...)")
    ap.add_argument("--no-pytorch", action="store_true", help="time the SDK only")
    ap.add_argument("--out", help="JSON-lines file to append every measurement to")
    ap.add_argument("--table", action="store_true", help="only print the table of --out")
    args = ap.parse_args(argv)

    if args.table:
        if not args.out:
            ap.error("--table needs --out FILE")
        with open(args.out, encoding="utf-8") as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return 0
    if not args.model:
        ap.error("give at least one --model DIR:BATCH:LENGTH")
    steps = [int(s) for s in args.steps.split(",")]
    rows = []
    for spec in args.model:
        try:
            model, batch, length = spec.rsplit(":", 2)
            batch, length = int(batch), int(length)
        except ValueError:
            ap.error(f"--model {spec!r}: want DIR:BATCH:LENGTH")
        for n in steps:
            common = ["--steps", str(n), "--predictor", args.predictor, "--batch", str(batch),
                      "--length", str(length), "--threads", str(args.threads), "--seed", str(args.seed)]
            measured = []
            for p in args.precisions.split(","):
                measured.append(run_json([args.sedd_bench, "speed", "--model", model, "--precision", p, "--json"] + common))
            if not args.no_pytorch:
                ref = [args.python, os.path.join(ROOT, "export", "reference_sampler.py"), "--model", model,
                       "--json"] + common
                if args.reference_stop_after and n > args.reference_stop_after:
                    ref += ["--stop-after", str(args.reference_stop_after)]
                measured.append(run_json(ref))
            for r in measured:
                r["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                rows.append(r)
                if args.out:
                    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
                    with open(args.out, "a", encoding="utf-8") as f:
                        f.write(json.dumps(r) + "\n")
            print(f"{model} {n} steps: " + ", ".join(f"{impl_name(r)} {r['sample_s']:.1f} s"
                                                     + (" (projected)" if r.get("projected") else "") for r in measured),
                  file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
