"""Decode throughput at 1B-class shapes against the accelerator's memory-bandwidth roofline.

    python bench/decode_roofline.py --device gpu                      # Llama-3.2-1B, Qwen2.5-1.5B
    python bench/decode_roofline.py --sizes llama3.2-1b --batches 64 --new-tokens 64   # smaller

Random weights (s2jax's init) of each model's shapes, bf16 weights and KV cache, `--prompt`
random prompt tokens per row, `--new-tokens` sampled at temperature 0.7, top-k 40. Decode is
memory-bound: every step reads all weights (the tied embedding once, as the LM head) and each
row's KV cache up to its position, so a step cannot take less than bytes / HBM bandwidth. The
bandwidth is measured here (a large bf16 array scaled and written back: read + write bytes over
time), and the spec figure of the card is printed beside it where known. Decode seconds are
(prompt + new tokens) minus (prompt + 1 token), both warm, so prefill and compile are excluded.
Qwen2.5's q/k/v biases are left out (Llama layout); they add under 0.1% of the bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
SIZES = ("llama3.2-1b", "qwen2.5-1.5b")  # bench/train.py's CONFIGS (HF-style shapes); "tiny"
# checks the script itself on a CPU
SPEC_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}  # bytes/s, SXM datasheets


def measured_bandwidth(gib: float = 4.0, reps: int = 10) -> float:
    """Best read + write bytes/s of one large elementwise op on the default device."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((int(gib * 2**30) // 2,), jnp.bfloat16)
    op = jax.jit(lambda a: a * 2, donate_argnums=0)
    x = op(x).block_until_ready()
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        x = op(x).block_until_ready()
        best = max(best, 2 * x.nbytes / (time.perf_counter() - t))
    return best


def step_bytes(shapes: dict, batch: int, context: float) -> tuple[float, float]:
    """(weight bytes, KV-cache bytes) one bf16 decode step reads at mean `context` positions."""
    D, F, L, V = (shapes["hidden_size"], shapes["intermediate_size"],
                  shapes["num_hidden_layers"], shapes["vocab_size"])
    hd = D // shapes["num_attention_heads"]
    KV = shapes["num_key_value_heads"] * hd
    weights = L * (2 * D * D + 2 * D * KV + 3 * D * F + 2 * D) + D * V + D
    cache = batch * context * L * 2 * KV
    return 2.0 * weights, 2.0 * cache


def sampler_for(shapes: dict, batch: int, slots: int, unroll: bool | None = None):
    from s2jax.sampling import Sampler
    from s2jax.testing.checkpoints import llama_config, random_model
    from s2jax.testing.tokenizers import word_tokenizer

    cfg = llama_config(shapes["vocab_size"], shapes["hidden_size"], shapes["intermediate_size"],
                       shapes["num_hidden_layers"], shapes["num_attention_heads"],
                       shapes["num_key_value_heads"], rms_norm_eps=1e-6,
                       tie_word_embeddings=True, max_position_embeddings=slots)
    model = random_model(cfg, param_dtype="bfloat16")
    return Sampler(model, word_tokenizer(shapes["vocab_size"]), max_batch=batch, max_len=slots,
                   chat=False, unroll_layers=unroll)


def timed(sampler, prompts, new_tokens: int, repeats: int, greedy: bool = False
          ) -> tuple[float, int]:
    """Fastest of `repeats` warm calls: (seconds, generated tokens)."""
    from s2jax.core.text_generator import SamplingParams

    params = SamplingParams(temperature=0.0 if greedy else 0.7, top_k=0 if greedy else 40,
                            max_new_tokens=new_tokens)
    sampler.generate_ids(prompts, params)  # compiles
    best = (float("inf"), 0)
    for _ in range(repeats):
        t = time.perf_counter()
        out = sampler.generate_ids(prompts, params)
        best = min(best, (time.perf_counter() - t, sum(s.num_tokens for r in out for s, _ in r)))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens per row")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    ap.add_argument("--unroll", action="store_true",
                    help="decode over per-layer weights and cache (Sampler unroll_layers)")
    ap.add_argument("--greedy", action="store_true", help="argmax instead of T=0.7 top-k 40")
    args = ap.parse_args()
    os.environ["JAX_PLATFORMS"] = "cuda" if args.device == "gpu" else "cpu"
    import jax
    import numpy as np

    from bench.train import CONFIGS

    kind = jax.devices()[0].device_kind
    bw = measured_bandwidth(4.0 if args.device == "gpu" else 0.25)
    spec = next((v for k, v in SPEC_BANDWIDTH.items() if k in kind), None)
    print(f"jax {jax.__version__} on {kind}: measured bandwidth {bw / 1e12:.2f} TB/s"
          + (f" (spec {spec / 1e12:.2f})" if spec else "") + "; roofline below uses the measured")
    print(f"{'size':13s} {'batch':>5s} {'prefill s':>9s} {'decode tok/s':>12s} "
          f"{'roofline tok/s':>14s} {'of roofline':>11s} {'weights-only roofline':>21s}")
    rng = np.random.default_rng(0)
    for name in args.sizes.split(","):
        shapes = TINY if name == "tiny" else CONFIGS[name][0]
        for batch in map(int, args.batches.split(",")):
            sampler = sampler_for(shapes, batch, args.prompt + args.new_tokens + 8,
                                  True if args.unroll else None)
            prompts = rng.integers(8, shapes["vocab_size"], (batch, args.prompt)).tolist()
            pre, _ = timed(sampler, prompts, 1, args.repeats, args.greedy)
            total, tokens = timed(sampler, prompts, args.new_tokens, args.repeats, args.greedy)
            decode_tps = (tokens - batch) / (total - pre)  # tokens after each row's first
            w, kv = step_bytes(shapes, batch, args.prompt + args.new_tokens / 2)
            roof = batch / ((w + kv) / bw)
            print(f"{name:13s} {batch:5d} {pre:9.3f} {decode_tps:12.0f} {roof:14.0f} "
                  f"{decode_tps / roof:11.1%} {batch / (w / bw):21.0f}   ({tokens} tokens made)",
                  flush=True)
            del sampler


if __name__ == "__main__":
    main()
