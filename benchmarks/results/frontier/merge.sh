#!/bin/sh
# Gathers the frontier's rows into one sweep.json (run from the repository root), then
# `bin/sedd-bench plot benchmarks/results/frontier/sweep.json` draws it. Each entropy budget's row
# comes from a 512-sample run where it has one, else from the 64-sample run.
set -eu
cd benchmarks/results
jq -s '
  (.[0] | del(.rows) | .complete = true | .samples = 0) +
  {rows: (
    [.[0].rows[]] +
    [.[1].rows[]] +
    [.[2].rows[]] +
    ([.[4].rows[].entropy_budget, .[5].rows[].entropy_budget] as $done | [.[3].rows[] | select(.entropy_budget as $b | $done | index($b) | not)]) +
    [.[4].rows[]] + [.[5].rows[]] +
    [.[6].rows[] | .predictor = "entropy-bounded, neighbours allowed"]
  )}' frontier-analytic/sweep.json frontier-analytic-64/sweep.json brown-sedd-small-128-samples/sweep.json \
    frontier-adaptive/sweep.json frontier-adaptive-512/sweep.json frontier-adaptive-512-budget12/sweep.json \
    frontier-adjacent/sweep.json > frontier/sweep.json
