#!/bin/sh
# Gathers the frontier's rows into one sweep.json (run from the repository root), then
# `bin/sedd-bench plot benchmarks/results/frontier/sweep.json` draws it. ADAPTIVE picks the
# entropy-bounded rows (default: the 512-sample run where it has rows, else the 64-sample one).
set -eu
cd benchmarks/results
adaptive=${ADAPTIVE:-frontier-adaptive-512/sweep.json}
[ -s "$adaptive" ] || adaptive=frontier-adaptive/sweep.json
jq -s '
  (.[0] | del(.rows) | .complete = true | .samples = 0) +
  {rows: (
    [.[0].rows[]] +
    [.[1].rows[] | select(.steps == 64 and .predictor == "analytic")] +
    [.[2].rows[]] +
    [.[3].rows[]] +
    [.[4].rows[] | .predictor = "entropy-bounded, neighbours allowed"]
  )}' frontier-analytic/sweep.json brown-sedd-small/sweep.json brown-sedd-small-128-samples/sweep.json \
    "$adaptive" frontier-adjacent/sweep.json > frontier/sweep.json
