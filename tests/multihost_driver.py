"""One process of the multi-host equivalence test (`tests/test_multihost.py`).

Loads a checkpoint onto a mesh over every process's devices, samples with `MultihostSampler`,
fine-tunes 3 steps, and (process 0 only) writes generations.jsonl and the exported model. Run
alone it is the single-process reference; with S2JAX_COORDINATOR / S2JAX_NUM_PROCESSES /
S2JAX_PROCESS_ID set it is one rank of a multi-process run. Device count and platform come from
the environment (XLA_FLAGS, JAX_PLATFORMS), set by the caller.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2jax.parallel.distributed import initialize, is_writer  # noqa: E402

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "star", "coin", "fox"]
PROMPTS = [f"Item {i}: " + " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(i % 3 + 1))
           for i in range(6)]


def examples(n: int) -> list[dict]:
    return [{"messages": [
        {"role": "user", "content": f"Item {i}: {WORDS[i % 10]} {WORDS[(i * 7) % 10]}"},
        {"role": "assistant", "content": f"{WORDS[(i * 3) % 10]} {WORDS[(i + 4) % 10]}"}]}
        for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mesh", default="data=1,fsdp=2,tensor=2")
    args = p.parse_args()
    initialize()  # a no-op without the S2JAX_* variables

    import jax

    import s2jax
    from s2jax.core.atomic import write_jsonl
    from s2jax.core.text_generator import SamplingParams
    from s2jax.parallel.sharding import make_mesh, parse_mesh
    from s2jax.sampling.multihost import MultihostSampler
    from s2jax.train import TrainConfig, finetune

    out = Path(args.out)
    mesh = make_mesh(**parse_mesh(args.mesh))
    model, tok = s2jax.load(args.checkpoint, mesh=mesh, dtype="float32")
    sampler = MultihostSampler(model, tok, max_batch=4, max_len=64)
    params = SamplingParams(n=2, temperature=1.0, top_k=40, max_new_tokens=12, seed=3)
    samples = sampler(PROMPTS, params)
    if is_writer():
        write_jsonl(out / "generations.jsonl", [
            {"id": str(i), "samples": [s.to_json() for s in row]} for i, row in enumerate(samples)])
    cfg = TrainConfig(steps=3, seq_len=32, batch_size=4, learning_rate=1e-2, pack=True,
                      progress=False, export=True, mesh=args.mesh)
    finetune(model, tok, examples(16), cfg, out / "run")
    print(f"process {jax.process_index()}/{jax.process_count()} done", flush=True)


if __name__ == "__main__":
    main()
