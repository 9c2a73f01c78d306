"""A LoRA train step vs a full fine-tuning step: tokens/s and peak memory, SmolLM2-135M shapes.

Both run `s2jax.train`'s jitted, donated step (the one `finetune` compiles) on random weights
and one random batch, every token a loss token, AdamW with clipping. Each mode runs in its own
process, so its peak resident memory (ru_maxrss) is its own; the report also gives XLA's
planned bytes of the step (arguments + temporaries + outputs not aliased to donated inputs,
what a device must hold) and, on a GPU, the device's peak bytes in use.

  python bench/lora.py                      # rank 16 on q,k,v,o,gate,up,down vs full
  python bench/lora.py --steps 3 --batch 2 --seq-len 128 --rank 8 --targets q,v
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

# SmolLM2-135M: 30 layers, d 576, MLP 1536, GQA 9 query / 3 KV heads of 64, vocab 49152, tied
SMOLLM2_135M = dict(architecture="LlamaForCausalLM", vocab_size=49152, hidden_size=576,
                    intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3,
                    head_dim=64, rms_norm_eps=1e-5, tie_word_embeddings=True)


def measure(mode: str, args) -> dict:
    """Compiles and times one mode's train step in this process; returns its figures."""
    import jax
    import numpy as np

    from s2jax.models.config import ModelConfig
    from s2jax.models.lora import init_adapters, num_adapter_params, with_scale
    from s2jax.models.params import num_params
    from s2jax.parallel.sharding import make_mesh
    from s2jax.run.plan import compiled_total
    from s2jax.testing.checkpoints import random_model
    from s2jax.train.config import LoraConfig, TrainConfig
    from s2jax.train.loop import compiled_run

    cfg = ModelConfig(**SMOLLM2_135M)
    lora = LoraConfig(rank=args.rank, alpha=2.0 * args.rank, targets=args.targets) \
        if mode == "lora" else LoraConfig()
    tcfg = TrainConfig(steps=100, seq_len=args.seq_len, batch_size=args.batch,
                       compute_dtype=args.compute_dtype, remat=args.remat, lora=lora)
    mesh = make_mesh(devices=jax.devices()[:1])
    base = random_model(cfg, param_dtype=args.base_dtype).params()
    init, target, step, _, frozen_shardings, _ = compiled_run(cfg, tcfg, 100, mesh)
    if lora.enabled:
        frozen = jax.device_put(with_scale(lora, base), frozen_shardings)
        state = init(init_adapters(cfg, lora, jax.random.key(0)))
        trained = num_adapter_params(cfg, lora)
    else:
        frozen, state, trained = {}, init(base), num_params(cfg)
    del base
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (1, args.batch, args.seq_len + 1)).astype(np.int32)
    batch = jax.device_put({"tokens": tokens[..., :-1], "targets": tokens[..., 1:],
                            "segment_ids": np.ones((1, args.batch, args.seq_len), np.int32),
                            "weights": np.ones((1, args.batch, args.seq_len), np.float32)})
    t0 = time.perf_counter()
    step = step.lower(state, frozen, {}, batch).compile()
    compile_s = time.perf_counter() - t0
    a = step.memory_analysis()
    xla = compiled_total(a)
    state, metrics = step(state, frozen, {}, batch)  # warm-up
    jax.block_until_ready(metrics)
    times, losses = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        state, metrics = step(state, frozen, {}, batch)
        losses.append(float(metrics["loss"]))
        times.append(time.perf_counter() - t)
    stats = jax.devices()[0].memory_stats() or {}
    n = args.batch * args.seq_len
    return {"mode": mode, "trained_params": trained, "tokens_per_step": n,
            "tokens_per_s_best": n / min(times),
            "tokens_per_s_median": n / statistics.median(times),
            "xla_step_bytes": xla, "xla_temp_bytes": a.temp_size_in_bytes,
            "device_peak_bytes": stats.get("peak_bytes_in_use"),
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "compile_s": compile_s, "first_loss": losses[0], "last_loss": losses[-1],
            "device": str(jax.devices()[0].device_kind)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4, help="timed steps per mode")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--targets", default="q,k,v,o,gate,up,down")
    p.add_argument("--base-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="the weights of both modes (LoRA keeps the base frozen in it)")
    p.add_argument("--compute-dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--remat", default="none", choices=("none", "full", "dots"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    rows = {}
    for mode in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", mode],
                             capture_output=True, text=True, env=os.environ)
        if out.returncode:
            sys.exit(f"{mode}: {out.stderr.strip().splitlines()[-1]}")
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    gib = lambda x: f"{x / 2**30:.2f}" if x else "-"
    print(f"SmolLM2-135M shapes, batch {args.batch} x {args.seq_len} tokens, "
          f"{args.base_dtype} weights, {args.compute_dtype} compute, remat {args.remat}, "
          f"LoRA rank {args.rank} on {args.targets}; {rows['full']['device']}")
    print(f"{'mode':6s} {'trained':>12s} {'tok/s best':>11s} {'[median]':>9s} "
          f"{'XLA step GiB':>13s} {'temp GiB':>9s} {'dev peak GiB':>13s} {'RSS GiB':>8s} "
          f"{'loss first->last':>17s}")
    for r in rows.values():
        print(f"{r['mode']:6s} {r['trained_params']:12,d} {r['tokens_per_s_best']:11.0f} "
              f"{r['tokens_per_s_median']:9.0f} {gib(r['xla_step_bytes']):>13s} "
              f"{gib(r['xla_temp_bytes']):>9s} {gib(r['device_peak_bytes']):>13s} "
              f"{gib(r['max_rss_bytes']):>8s} {r['first_loss']:8.3f}->{r['last_loss']:.3f}")
    f, lo = rows["full"], rows["lora"]
    print(f"lora / full: tokens/s {lo['tokens_per_s_best'] / f['tokens_per_s_best']:.2f}x, "
          f"XLA step memory {lo['xla_step_bytes'] / f['xla_step_bytes']:.2f}x, "
          f"RSS {lo['max_rss_bytes'] / f['max_rss_bytes']:.2f}x")


if __name__ == "__main__":
    main()
