"""Peak SFT-step memory at Gemma 3 270M shapes: fused chunked LM head + loss vs all logits at once.

Compiles the real train step (`s2jax.train.step`) for one device, allocating nothing, and prints
XLA's buffer assignment (`compiled.memory_analysis()`): arguments (params, Adam state, batch),
temporaries (activations, gradients, logits) and the peak = arguments + temporaries + outputs
not aliased to the donated state. The model is a Llama-family config with Gemma 3 270M's shapes
(vocab 262,144, d 640, 18 layers, 4 query / 1 KV heads of 256, MLP 2048, tied embeddings);
Gemma's extra norms and soft-caps change none of the big buffers.

With `--kd`, also the token-level distillation step (`train.kd`) at each chunk: a frozen
teacher of the same shapes (its weights in `--teacher-dtype`, counted in the peak) runs on its
own rows of `seq_len` tokens in the same step, and the fused loss holds both models' logits
for `loss_chunk / 2` tokens at a time; the ratio is against the cross-entropy step.

  python bench/train_memory.py                          # batch 8 x 512, chunks 0 and 1024
  python bench/train_memory.py --chunks 0,256,1024,4096 --remat full
  python bench/train_memory.py --chunks 1024 --kd forward_kl,reverse_kl,jsd
  python bench/train_memory.py --rss qwen2.5-coder-0.5b-instruct   # the real model, fetched

With `--rss MODEL`, instead: the resident memory of a real full fine-tune (`finetune`, fp32,
AdamW, a checkpoint and the HF export) of MODEL on distillation-shaped chats (prompts of
~50-300 tokens, answers of 5-30), sampled from /proc/self/status every 20 ms: the peak of each
phase (load, train, export) and the whole run's peak per parameter. The floor is 16 bytes a
parameter (fp32 weights, gradients, Adam's two moments); RSS does not depend on load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

GEMMA3_270M = dict(architecture="LlamaForCausalLM", vocab_size=262144, hidden_size=640,
                   intermediate_size=2048, num_layers=18, num_heads=4, num_kv_heads=1,
                   head_dim=256, tie_word_embeddings=True)


class PeakRSS:
    """This process's peak resident memory per phase, sampled by a thread (ru_maxrss has one
    peak per process)."""

    def __init__(self, every: float = 0.02):
        import threading

        self.phase, self.peaks = "start", {}
        self.thread = threading.Thread(target=self._watch, args=(every,), daemon=True)
        self.thread.start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    def _watch(self, every: float) -> None:
        import time

        while True:
            phase, rss = self.phase, self.now()
            self.peaks[phase] = max(self.peaks.get(phase, 0), rss)
            time.sleep(every)


def distill_shaped_chats(n: int, seed: int = 0) -> list[dict]:
    """Chats shaped as a distillation set: a prompt of ~50-300 tokens, an answer of 5-30."""
    import numpy as np

    rng = np.random.default_rng(seed)
    facts = ["The river runs north of the old town.", "Trade grew after the railway came.",
             "Its parliament meets in the largest city.", "The coast has three main ports."]
    return [{"messages": [
        {"role": "user", "content": " ".join(rng.choice(facts, int(rng.integers(4, 30))))
         + f" Question {i}: what is the capital of country {i}? Answer briefly."},
        {"role": "assistant", "content": "The capital is " + " ".join(
            ["City"] * int(rng.integers(1, 20))) + f" {i}."}]} for i in range(n)]


def rss_case(name: str, steps: int, batch: int, seq_len: int, remat: str = "auto") -> None:
    """--rss: peak resident memory of a full fine-tune of the real model `name`."""
    import resource
    import tempfile

    import s2jax
    from s2jax.train import loop
    from s2jax.train.config import TrainConfig

    rss = PeakRSS()
    rss.phase = "load"
    model, tokenizer = s2jax.load(name, dtype="float32")
    n = sum(v.size for v in model.params().values())
    rss.phase = "train"
    save_model = loop.save_model

    def export(*args, **kwargs):
        rss.phase = "export"
        save_model(*args, **kwargs)
        rss.phase = "end"

    loop.save_model = export  # the run's export phase, timed apart
    config = TrainConfig(steps=steps, batch_size=batch, seq_len=seq_len, progress=False,
                         remat=remat)
    with tempfile.TemporaryDirectory() as run_dir:
        loop.finetune(model, tokenizer, distill_shaped_chats(8 * batch), config, run_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{name}: {n / 1e6:.0f}M params, full fine-tune, fp32 AdamW, {steps} steps of "
          f"{batch} x {seq_len} tokens, remat {remat}, checkpoint + export; peak RSS by "
          "phase: " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in rss.peaks.items()
                                if k != "start"))
    print(f"peak RSS {peak / 1e9:.2f} GB = {peak / n:.1f} bytes/param (floor 16: weights, "
          f"gradients, Adam moments; issue 28's target <= 13 GB)")


def main() -> None:
    import jax
    import jax.numpy as jnp

    from s2jax.models.config import ModelConfig
    from s2jax.models.params import num_params
    from s2jax.parallel.sharding import make_mesh
    from s2jax.run.plan import GiB, compiled_total, hand_estimate, train_memory
    from s2jax.train.config import KDConfig, TrainConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=0, help="rows (default 8; --rss: 4)")
    p.add_argument("--seq-len", type=int, default=0, help="tokens a row (default 512; --rss: 256)")
    p.add_argument("--chunks", default="0,1024", help="loss_chunk values (0: all at once)")
    p.add_argument("--remat", default=None, choices=("auto", "none", "full", "dots"),
                   help="default: full for the compiled steps, the library's auto for --rss")
    p.add_argument("--kd", default="", help="divergences of distillation steps to compile too, "
                   "e.g. forward_kl,reverse_kl,jsd")
    p.add_argument("--teacher-dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--rss", default="", metavar="MODEL",
                   help="instead: peak RSS of a real full fine-tune of MODEL (a fetched name)")
    p.add_argument("--steps", type=int, default=3, help="--rss: optimizer steps")
    args = p.parse_args()
    if args.rss:
        return rss_case(args.rss, args.steps, args.batch or 4, args.seq_len or 256,
                        args.remat or "auto")
    args.remat = args.remat or "full"
    args.batch, args.seq_len = args.batch or 8, args.seq_len or 512
    cfg = ModelConfig(**GEMMA3_270M)
    mesh = make_mesh(devices=jax.devices()[:1])
    tokens = args.batch * args.seq_len
    print(f"Gemma 3 270M shapes ({num_params(cfg) / 1e6:.0f}M params), batch {args.batch} x "
          f"{args.seq_len}, fp32, remat {args.remat}; one fp32 [tokens, vocab] buffer is "
          f"{tokens * cfg.vocab_size * 4 / GiB:.2f} GiB")
    print(f"{'loss_chunk':>10} {'arguments GiB':>14} {'temp GiB':>9} {'peak GiB':>9} "
          f"{'s2jax plan hand GiB':>20}")
    peaks = {}
    for chunk in (int(c) for c in args.chunks.split(",")):
        tcfg = TrainConfig(batch_size=args.batch, seq_len=args.seq_len, remat=args.remat,
                           loss_chunk=chunk)
        analysis, _, _ = train_memory(cfg, tcfg, mesh)
        peaks[chunk] = compiled_total(analysis)
        hand = hand_estimate(cfg, tcfg, {}, 1, 1, "float32")["train_total"]
        print(f"{chunk or 'all':>10} {analysis.argument_size_in_bytes / GiB:14.2f} "
              f"{analysis.temp_size_in_bytes / GiB:9.2f} {peaks[chunk] / GiB:9.2f} "
              f"{hand / GiB:20.2f}", flush=True)
        for kind in filter(None, args.kd.split(",")):
            kd = dataclasses.replace(tcfg, kd=KDConfig(kind))
            a, _, _ = train_memory(cfg, kd, mesh, teacher_dtype=jnp.dtype(args.teacher_dtype))
            peak = compiled_total(a)
            teacher = num_params(cfg) * jnp.dtype(args.teacher_dtype).itemsize
            print(f"{'  kd ' + kind:>10} {a.argument_size_in_bytes / GiB:14.2f} "
                  f"{a.temp_size_in_bytes / GiB:9.2f} {peak / GiB:9.2f}   "
                  f"{peak / peaks[chunk]:.3f}x of cross-entropy (teacher weights "
                  f"{teacher / GiB:.2f} GiB of it)", flush=True)
    if 0 in peaks and len(peaks) > 1:
        best = min(peaks, key=peaks.get)
        print(f"chunk {best} saves {(peaks[0] - peaks[best]) / GiB:.2f} GiB of peak "
              f"({peaks[best] / peaks[0]:.2f}x of all-at-once)")


if __name__ == "__main__":
    main()
