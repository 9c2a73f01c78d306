"""s2jax sampling against the engines a user would run instead: vLLM's CPU build and llama.cpp.

    python bench/engines.py                                  # SmolLM2-135M-Instruct, fetched
    python bench/engines.py --vllm-python /work/venvs/vllm/bin/python --dtypes float32,bfloat16

Every side gets the same 32 chat prompts as token ids (rendered once by the model's chat
template), samples 64 new tokens per prompt at temperature 0.7, top-k 40, with EOS ignored
(every row makes all its tokens), on `--threads` threads. Two measures per side: decode
throughput (generated tokens / seconds of the whole call) and prefill (the 32 prompts with one
new token). Rounds are interleaved (s2jax, vLLM, llama.cpp, s2jax, ...) so load on a shared
machine hits all sides alike; the fastest round of each side is reported, with the ratio
s2jax / peer in the same run.

Peers run in their own processes (`--peer`, this file with the peer's interpreter: vLLM and
llama.cpp live in their own virtual environments, with their own torch), each loaded once and
driven over stdin/stdout. A peer whose interpreter or package is absent is skipped, saying so.
vLLM loads the HF directory `s2jax.save` writes from the fetched weights (the same fp32 values
s2jax samples from); llama.cpp loads the fetched GGUF itself, whose weights are quantized (Q4_1
for SmolLM2), so its rows compare engines, not the same arithmetic. Compile time (s2jax's first
call) and load time are excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = 32
NEW_TOKENS = 64
SAMPLING = dict(temperature=0.7, top_k=40)
# before each timed call: the side that just ran lets its worker threads go idle (vLLM's OpenMP
# threads spin after a call; measured at bf16, s2jax 368 tok/s right after vLLM, 404 after a
# 1 s pause, 423 with no peer resident; vLLM 513 -> 530 with the pause)
PAUSE_S = 1.0
QUESTIONS = ["What is the capital of {}?", "Name one famous dish from {}.",
             "Which language is spoken most in {}?", "Describe the flag of {} briefly."]
COUNTRIES = ["France", "Japan", "Brazil", "Kenya", "Canada", "India", "Norway", "Peru"]


# -- the peer side: no s2jax or JAX import (it runs in the peer's environment) ---------------

def _peer_vllm(model_dir: str, dtype: str, threads: int):
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, dtype=dtype, max_num_seqs=PROMPTS, seed=0,
              max_model_len=1024)

    def run(prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
        sp = SamplingParams(**SAMPLING, max_tokens=new_tokens, ignore_eos=True, seed=0)
        t = time.perf_counter()
        out = llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
        return time.perf_counter() - t, sum(len(o.outputs[0].token_ids) for o in out)

    return run


def _peer_llama(gguf: str, dtype: str, threads: int):
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_batch=512, seed=0,
                logits_all=False, verbose=False)

    def run(prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
        # llama-cpp-python's high-level API decodes one sequence at a time (sequential)
        t, n = time.perf_counter(), 0
        for p in prompts:
            llm.reset()
            out = llm.generate(p, temp=SAMPLING["temperature"], top_k=SAMPLING["top_k"],
                               top_p=1.0, min_p=0.0, reset=True)
            for n_here, _ in enumerate(out, 1):  # ignores EOS: stops at the count only
                if n_here == new_tokens:
                    break
            n += n_here
        return time.perf_counter() - t, n

    return run


def peer_main(kind: str, source: str, dtype: str, threads: int) -> None:
    """Loads the peer, says "ready", then answers each stdin line {prompts, new_tokens} with
    {seconds, tokens}."""
    run = {"vllm": _peer_vllm, "llama": _peer_llama}[kind](source, dtype, threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        seconds, tokens = run(job["prompts"], job["new_tokens"])
        print(json.dumps({"seconds": seconds, "tokens": tokens}), flush=True)


# -- the driver ---------------------------------------------------------------------------------

class Peer:
    """A peer engine in its own process, or the reason it is skipped (`.skipped`)."""

    def __init__(self, name: str, python: str, kind: str, source: str, dtype: str,
                 threads: int):
        self.name, self.skipped, self.proc = name, None, None
        if not Path(python).is_file():
            self.skipped = f"{python} not found (install the peer into its own venv)"
            return
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "JAX_PLATFORMS": "cpu"}
        # the engines log a lot: to a file, as a full stderr pipe would block the peer
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed with the peer)
        self.proc = subprocess.Popen(
            [python, __file__, "--peer", kind, "--source", source, "--dtype", dtype,
             "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, env=env)
        if self._read() is None:
            self.log.seek(0)
            err = self.log.read().strip().splitlines()
            self.skipped = f"did not start: {err[-1] if err else 'no output'}"

    def _read(self) -> dict | None:
        for line in self.proc.stdout:  # engines may print their own lines first
            if line.startswith("{"):
                return json.loads(line)
        return None

    def __call__(self, prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
        self.proc.stdin.write(json.dumps({"prompts": prompts, "new_tokens": new_tokens}) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        return out["seconds"], out["tokens"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        if self.proc is not None:
            self.log.close()


def chat_prompts(tokenizer) -> list[list[int]]:
    """The 32 chat prompts as token ids, rendered by the model's own chat template."""
    texts = [q.format(c) for q in QUESTIONS for c in COUNTRIES][:PROMPTS]
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": t}],
                                              add_generation_prompt=True, tokenize=False)
                for t in texts]
    return [list(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered]


def s2jax_side(directory: Path, dtype: str):
    """A warmed-up s2jax sampler on the saved weights: (prompts, new_tokens) -> (s, tokens)."""
    import s2jax
    from s2jax.core.text_generator import SamplingParams
    from s2jax.sampling import Sampler

    model, tok = s2jax.load(directory, dtype=dtype)
    sampler = Sampler(model, tok, max_batch=PROMPTS, chat=False)

    def run(prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
        params = SamplingParams(n=1, **SAMPLING, max_new_tokens=new_tokens)
        t = time.perf_counter()
        out = sampler.generate_ids(prompts, params)
        return time.perf_counter() - t, sum(s.num_tokens for row in out for s, _ in row)

    return run, sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a fetched model's name")
    ap.add_argument("--dtypes", default="float32,bfloat16",
                    help="weights and KV cache of s2jax and vLLM, each compared in its own rows")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=NEW_TOKENS,
                    help="new tokens per prompt in the decode measure (more: longer KV caches)")
    ap.add_argument("--vllm-python", default="/work/venvs/vllm/bin/python",
                    help="an interpreter with vllm (the CPU build) installed")
    ap.add_argument("--llama-python", default="/work/venvs/vllm/bin/python",
                    help="an interpreter with llama-cpp-python installed")
    ap.add_argument("--peer", choices=("vllm", "llama"), help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: expected at least 1 timed round")
    if args.new_tokens < 2:
        ap.error(f"--new-tokens {args.new_tokens}: expected at least 2 (1 is the prefill measure)")
    if args.peer:
        return peer_main(args.peer, args.source, args.dtype, args.threads)

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true "
                          f"intra_op_parallelism_threads={args.threads}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
    import s2jax
    from s2jax.core.errors import S2JaxError
    from s2jax.models.fetch import resolve
    from s2jax.models.projection import cpu_bf16_dot

    try:
        model, tokenizer = s2jax.load(args.model, dtype="float32")
    except S2JaxError as e:
        print(f"skipped: {e}")
        return
    gguf = str(resolve(args.model))
    prompts = chat_prompts(tokenizer)
    print(f"{args.model}: {PROMPTS} chat prompts of {min(map(len, prompts))}-"
          f"{max(map(len, prompts))} tokens, {args.new_tokens} new tokens, T=0.7 top-k 40, EOS "
          f"ignored, {args.threads} threads, {args.rounds} interleaved rounds, fastest shown; "
          f"load average {os.getloadavg()[0]:.2f}; CPU bf16 dot products: "
          f"{'yes' if cpu_bf16_dot() else 'no (bf16 products run on fp32 copies)'}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "model"
        s2jax.save(model, tokenizer, directory)
        gen = directory / "generation_config.json"
        gen.write_text(json.dumps({**json.loads(gen.read_text()), "eos_token_id": []}))
        del model
        for dtype in args.dtypes.split(","):
            compare(dtype, directory, gguf, prompts, args)


def compare(dtype: str, directory: Path, gguf: str, prompts: list[list[int]], args) -> None:
    """One precision's rows: s2jax and the peers present, interleaved, with the ratios."""
    sides = {}
    sides["s2jax"], sampler = s2jax_side(directory, dtype)
    peers = [Peer("vLLM-CPU", args.vllm_python, "vllm", str(directory), dtype, args.threads)]
    if dtype == "float32":  # the GGUF's own weights: once
        peers.append(Peer("llama.cpp", args.llama_python, "llama", gguf, dtype, args.threads))
    for p in peers:
        if p.skipped:
            print(f"  [{dtype}] {p.name} skipped: {p.skipped}")
        else:
            sides[p.name] = p
    for run in sides.values():  # warm-up: compiles, allocates
        run(prompts, args.new_tokens)
        run(prompts, 1)
    best = {name: {} for name in sides}  # name: {decode|prefill: (seconds, tokens)}
    for _ in range(args.rounds):
        for name, run in sides.items():
            for what, n in (("decode", args.new_tokens), ("prefill", 1)):
                time.sleep(PAUSE_S)
                s, tok = run(prompts, n)
                if what not in best[name] or s < best[name][what][0]:
                    best[name][what] = (s, tok)
    (ds, dt), (ps, _) = best["s2jax"]["decode"], best["s2jax"]["prefill"]
    print(f"  [{dtype}] s2jax: {dt / ds:,.0f} tok/s ({ds:.2f}s), prefill {ps:.2f}s "
          f"({sampler.compile_count} programs)")
    for name in list(sides)[1:]:
        (pds, pdt), (pps, _) = best[name]["decode"], best[name]["prefill"]
        print(f"  [{dtype}] {name}: {pdt / pds:,.0f} tok/s ({pds:.2f}s), prefill {pps:.2f}s; "
              f"s2jax / {name}: decode {(dt / ds) / (pdt / pds):.2f}x, prefill "
              f"{pps / ps:.2f}x", flush=True)
    for p in peers:
        p.close()

if __name__ == "__main__":
    main()
