"""Whole-process time of a greedy `s2jax generate` job against a short `transformers` script.

    python bench/process.py [--prompts 256] [--new-tokens 128] [--repeats 2]

The job a user meets: 256 short prompts x 128 new tokens, greedy, from a ~3M-parameter random
Llama checkpoint written by `transformers` (no EOS, so every row makes all 128 tokens). Each
side is a fresh `python3` process timed from start to exit: imports, loading, compiling,
generating and writing included. s2jax runs first with an empty compilation cache directory
(a first run) and then with the cache it left (a repeated run); the transformers script runs
interleaved with them, so load on a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the reference: what a user would write with transformers for the same job
HF_SCRIPT = '''
import json, sys, torch, transformers
model_dir, inp, out, new_tokens, batch = sys.argv[1:4] + [int(x) for x in sys.argv[4:6]]
tok = transformers.AutoTokenizer.from_pretrained(model_dir)
tok.padding_side = "left"
model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
rows = [json.loads(line) for line in open(inp)]
results = []
with torch.no_grad():
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        enc = tok([r["prompt"] for r in chunk], return_tensors="pt", padding=True)
        ids = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        results += [{"id": r["id"], "text": t} for r, t in zip(chunk, texts)]
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\\n" for r in results)
'''

LLAMA_3M = dict(vocab_size=8192, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                num_attention_heads=6, num_key_value_heads=6, tie_word_embeddings=True)


def make_job(directory: Path, prompts: int) -> tuple[Path, Path, int]:
    """(checkpoint dir, prompts JSONL, parameter count)."""
    import numpy as np

    from bench.common import hf_llama_checkpoint

    ckpt = directory / "model"
    ckpt.mkdir()
    _, n_params = hf_llama_checkpoint(ckpt, LLAMA_3M)
    rng = np.random.default_rng(0)
    inp = directory / "prompts.jsonl"
    with open(inp, "w") as f:
        for i in range(prompts):
            words = rng.integers(8, LLAMA_3M["vocab_size"], size=int(rng.integers(4, 17)))
            f.write(json.dumps({"id": str(i), "prompt": " ".join(f"t{w}" for w in words)}) + "\n")
    return ckpt, inp, n_params


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the process `cmd`, from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def _runs(times: list[tuple[float, float]]) -> str:
    return ", ".join(f"{w:.2f} s ({c:.1f} cpu-s)" for w, c in times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64, help="decode rows (both sides)")
    ap.add_argument("--repeats", type=int, default=2, help="repeated (cache-warm) runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, inp, n_params = make_job(tmp, args.prompts)
        cache = tmp / "jax-cache"
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TOKENIZERS_PARALLELISM="false")
        ours = [sys.executable, "-m", "s2jax.cli", "--compilation-cache", str(cache),
                "generate", "--model", str(ckpt), "--input", str(inp), "--output",
                str(tmp / "s2jax.core.jsonl"), "--temperature", "0", "--no-chat",
                "--max-new-tokens", str(args.new_tokens), "--max-batch", str(args.batch)]
        script = tmp / "hf_generate.py"
        script.write_text(HF_SCRIPT)
        theirs = [sys.executable, str(script), str(ckpt), str(inp), str(tmp / "hf.jsonl"),
                  str(args.new_tokens), str(args.batch)]
        print(f"Llama {n_params / 1e6:.1f}M params, {args.prompts} prompts x {args.new_tokens} "
              f"new tokens, greedy, batch {args.batch}; {os.cpu_count()} CPUs; whole processes")
        hf = [timed(theirs, env)]
        first = timed(ours, env)
        entries = len(list(cache.iterdir()))
        repeated = []
        for _ in range(args.repeats):
            hf.append(timed(theirs, env))
            repeated.append(timed(ours, env))
        ref, best = min(hf), min(repeated)
        print(f"    transformers script   {ref[0]:6.2f} s, {ref[1]:5.1f} cpu-s (fastest of "
              f"{_runs(hf)})")
        print(f"    s2jax first run       {first[0]:6.2f} s, {first[1]:5.1f} cpu-s (empty "
              f"compilation cache; it wrote {entries} programs); ratio {ref[0] / first[0]:.2f}x, "
              f"cpu {ref[1] / first[1]:.2f}x")
        print(f"    s2jax repeated run    {best[0]:6.2f} s, {best[1]:5.1f} cpu-s (fastest of "
              f"{_runs(repeated)}); ratio {ref[0] / best[0]:.2f}x, cpu {ref[1] / best[1]:.2f}x")
        print(f"    load average {os.getloadavg()[0]:.2f} (ratios are of wall times; on a loaded "
              "machine compare cpu-s)")


if __name__ == "__main__":
    main()
