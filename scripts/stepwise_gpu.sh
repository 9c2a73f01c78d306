#!/usr/bin/env bash
# Stepwise internalization of K x K multiplication at GPT-2-small size on one GPU, in about 10
# minutes: the stepwise arm (partial-product trace, removed 8 tokens per stage) and the
# answer-only arm on the same number of steps, each from scratch, then a table beside the
# figures of Deng, Choi & Shieber (2024, arXiv 2405.14838).
#
#   bash scripts/stepwise_gpu.sh [K] [OUT]        # K default 4; OUT default stepwise_gpu_out
#   SMOKE=1 bash scripts/stepwise_gpu.sh 2 /tmp/x # CPU-sized smoke test of the same path
#
# Model: the toy recipe's Llama at GPT-2 small's shape (12 layers, d 768, 12 heads of 64, MLP
# 2048: 85M non-embedding parameters, GPT-2 small has 85M), a 300-token vocabulary (every digit
# one token), bf16 compute with fp32 master weights, AdamW at a constant 5e-5 as the paper.
# Budget per arm: STEPS optimizer steps of 32 rows x 512 tokens (~16k tokens a step).
#
# What to expect. The paper (GPT-2 small, pretrained, 200 epochs of lr 5e-5, batch 32, 8 trace
# tokens removed per epoch, smoothing lambda 4, optimizer reset per stage) reports, without any
# trace tokens at test time: 4x4 100%, 5x5 100%, 7x7 95%, 9x9 99% (11x11 74%, partially
# internalized); standard training on answers alone "cannot solve beyond 4-by-4". Those runs
# took many GPU-hours; 10 minutes is about 1% of a 9x9 run, and this model starts from random
# weights. At K=9 (a 247-token trace, 32 stages) expect neither arm to answer; K=4 (a 47-token
# trace, 7 stages: 2,500 steps) is the largest K whose curriculum completes a first stage of
# 1,000 steps and 6 more of 250 within the budget on an H100/H200-class GPU (estimated, not
# measured: no GPU was lent when this script was written; it was smoke-tested on CPU only).
set -euo pipefail
K=${1:-4}
OUT=${2:-stepwise_gpu_out}
PY=${PYTHON:-python}
if [[ -n "${SMOKE:-}" ]]; then  # tiny shapes and steps: the same commands on a CPU
  SHAPE=(--hidden-size 32 --intermediate-size 64 --num-layers 2 --num-heads 2 --num-kv-heads 2
         --head-dim 16 --batch-size 4 --seq-len 128 --compute-dtype float32)
  STEPS=(--first-stage-steps 4 --steps-per-stage 2 --train-examples 400 --test 16)
else
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
  SHAPE=(--hidden-size 768 --intermediate-size 2048 --num-layers 12 --num-heads 12
         --num-kv-heads 12 --head-dim 64 --batch-size 32 --seq-len 512 --compute-dtype bfloat16)
  STEPS=(--first-stage-steps 1000 --steps-per-stage 250 --train-examples 400000 --test 500)
fi
COMMON=(--k "$K" --vocab-size 300 --learning-rate 5e-5 --warmup-steps 0 --tokens-per-stage 8
        --smoothing 4 "${SHAPE[@]}" "${STEPS[@]}")
mkdir -p "$OUT"
for arm in stepwise no-stepwise; do
  start=$(date +%s)
  $PY -m s2jax.cli toy multiply --out "$OUT/$arm" --$arm "${COMMON[@]}" | tee "$OUT/$arm.log"
  echo "$arm: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
done
$PY scripts/stepwise_report.py multiply "$OUT/stepwise/results.json" \
  "$OUT/no-stepwise/results.json" --out "$OUT/report" --paper
