#!/usr/bin/env bash
# The GPU checks of s2jax in one short run, for a machine with one CUDA GPU and jax[cuda], torch
# (CUDA), transformers installed (CI has no GPU, so none of this runs there):
#   1. the GPU-only tests (cuDNN attention on the training path vs the einsum reference) and the
#      attention/loss tests;
#   2. SFT step throughput vs transformers + torch AdamW, bf16 mixed precision, SmolLM2-135M's
#      shapes at a GPU-sized batch (train_long: 4 rows of 4,096 tokens);
#   3. sampling throughput vs transformers generate, SmolLM2-135M's shapes, bf16 (and fp32);
#   4. parity tests against transformers (logits, greedy decoding) with JAX on the GPU;
#   5. the quick demo end to end;
#   6. (train_1b, decode_1b) 1B-class shapes, Llama-3.2-1B and Qwen2.5-1.5B with random weights:
#      SFT MFU against torch, and decode tokens/s at batch 64 and 256 against the HBM roofline.
# Each step has its own time limit; logs go to $OUT (default ./gpu_check_out), a summary last.
#   bash bench/gpu_check.sh [STEP ...]     # steps: tests train sampling parity demo
#                                          train_long sampling_fp32 train_1b decode_1b
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export JAX_PLATFORMS=cuda HF_HUB_OFFLINE=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45  # torch shares the card in the benchmarks
steps=${*:-tests train sampling parity demo train_long sampling_fp32}

run_step() {  # name, seconds, command...
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "== $name: exit $rc in $(($(date +%s) - start)) s (limit $limit)" | tee -a "$OUT/summary.txt"
    grep -v "Writing model shards\|UserWarning\|warnings.warn" "$OUT/$name.log" | tail -n 12
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/summary.txt"
python3 -c "import jax, flax, optax, orbax.checkpoint, torch, transformers as t; print('jax', \
jax.__version__, jax.devices(), '| flax', flax.__version__, '| torch', torch.__version__, \
'| transformers', t.__version__)" 2>&1 | tail -n 1 | tee -a "$OUT/summary.txt"

for s in $steps; do
    case $s in
    tests) run_step tests 90 python3 -m pytest -q -p no:cacheprovider -x tests/test_gpu.py \
        tests/test_attention.py tests/test_loss.py -rs ;;
    train) run_step train 100 python3 bench/train.py --device gpu --dtype bfloat16 \
        --sizes smollm2-135m --batch 16 --seq-len 1024 --steps 10 ;;
    train_long) run_step train_long 100 python3 bench/train.py --device gpu --dtype bfloat16 \
        --sizes smollm2-135m --batch 4 --seq-len 4096 --steps 10 ;;
    sampling) run_step sampling 90 python3 bench/sampling.py --device gpu --dtype bfloat16 \
        --cases smollm2 --repeats 3 ;;
    sampling_fp32) run_step sampling_fp32 70 python3 bench/sampling.py --device gpu \
        --cases smollm2 --repeats 2 ;;
    parity) run_step parity 150 python3 -m pytest -q -p no:cacheprovider \
        tests/test_models.py::test_logits_parity_with_transformers \
        tests/test_sampling.py::test_greedy_matches_transformers tests/test_train.py -k \
        "parity or greedy or bf16 or packed or overfits or exported" ;;
    train_1b) run_step train_1b 240 python3 bench/train.py --device gpu --dtype bfloat16 \
        --sizes llama3.2-1b,qwen2.5-1.5b --steps 10 --remat dots ;;
    decode_1b) run_step decode_1b 240 python3 bench/decode_roofline.py --device gpu ;;
    demo) run_step demo 90 python3 -m s2jax.cli demo --quick --out /tmp/s2jax_gpu_demo ;;
    *) echo "unknown step $s" ;;
    esac
done
echo "== summary"; cat "$OUT/summary.txt"
