"""s2jax sampling against `transformers` `generate` (torch) on the same checkpoints/prompts.

    python bench/sampling.py [--cases a,b,c] [--threads 2]
    python bench/sampling.py --device gpu --dtype bfloat16 --cases smollm2

Both sides run on the CPU (default) or one GPU, with weights and KV cache in `--dtype`.

Cases: (a) ~5M-param Llama, batch 64, 128 new tokens; (b) ~100M-param Llama, batch 16, 64 new
tokens; (c) 32 prompts x n=8 samples whose lengths differ widely, continuous batching on vs off;
(smollm2) SmolLM2-135M's shapes (30 layers, d 576, GQA 9/3 heads of 64, vocab 49,152, tied
embeddings), batch 32, 64 new tokens, temperature 0.7 top-k 40; (smollm2-real) the same on the
real SmolLM2-135M-Instruct weights, once fetched (`s2jax fetch-models`), else skipped; (prefill)
peak memory of one prefill of 8 prompts x 4,096 tokens at SmolLM2 shapes, from the compiled
program's memory analysis, unchunked (one pass, as before chunked prefill) and in chunks of
`PREFILL_CHUNK` tokens.
Both sides sample (temperature 1, top-k 50 unless the case says otherwise) from identical random
checkpoints written by `transformers`; (a), (b) and (smollm2) have no EOS so every row makes
exactly max_new_tokens tokens. Each timed run follows an identical warm-up run, so compile time is
excluded (and reported, from JAX's compile events); the timed runs of the two sides alternate
(`--repeats`) and the fastest of each is reported, so load on a shared machine hits both alike.

(c) construction: a random Llama at init scale has near-uniform next-token probabilities, so
declaring V/48 token ids as EOS in generation_config.json makes each row stop with probability
~1/48 per step: lengths are geometric (mean ~48, capped at 256), fixed by the seed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
import numpy as np  # noqa: E402

# imported before the work starts threads: its host-memory policy (s2jax/core/host_memory.py)
import s2jax  # noqa: E402
from bench.common import hf_llama_checkpoint  # noqa: E402
from s2jax.core.errors import S2JaxError  # noqa: E402

CASES = {  # name: (LlamaConfig overrides, batch, new tokens, n, eos fraction[, sampling])
    "a": (dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=4), 64, 128, 1, 0.0),
    "b": (dict(vocab_size=8192, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
               num_attention_heads=12, num_key_value_heads=12), 16, 64, 1, 0.0),
    "c": (dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=4), 32, 256, 8, 1 / 48),
    "smollm2": (dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                     num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                     tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0),
                32, 64, 1, 0.0, dict(temperature=0.7, top_k=40)),
}
DEFAULT_SAMPLING = dict(temperature=1.0, top_k=50)
# cases over a real model's weights, when it is fetched: name -> (model, case whose batch shape
# and sampling it takes)
REAL_CASES = {"smollm2-real": ("smollm2-135m-instruct", "smollm2")}


def real_checkpoint(directory: Path, name: str) -> tuple[list[int], int, int]:
    """The fetched real model `name` as the HF directory `directory` (new) that both sides load,
    with no EOS (every row makes all its tokens, as in the random cases): (eos [], parameter
    count, vocabulary)."""
    model, tokenizer = s2jax.load(name, dtype="float32")
    s2jax.save(model, tokenizer, directory)
    gen_path = directory / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    gen["eos_token_id"] = []
    gen_path.write_text(json.dumps(gen))
    n = sum(int(np.prod(v.shape)) for v in model.params().values())
    return [], n, model.config.vocab_size


def prompts_for(batch: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(8, vocab, size=int(n)).tolist()
            for n in rng.integers(8, 33, size=batch)]


def hf_runner(directory: Path, prompts, new_tokens: int, n: int, eos: list[int], sampling: dict,
              device: str = "cpu", dtype: str = "float32") -> Callable[[], tuple[float, int]]:
    """A warmed-up `generate` call (left-padded batch, n per prompt): () -> (seconds, tokens)."""
    import torch
    import transformers

    dev = "cuda" if device == "gpu" else "cpu"
    model = transformers.AutoModelForCausalLM.from_pretrained(directory,
                                                              dtype=getattr(torch, dtype))
    model.to(dev).eval()
    T = max(map(len, prompts))
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts], device=dev)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=dev)
    kwargs = dict(do_sample=True, **sampling, max_new_tokens=new_tokens,
                  num_return_sequences=n, pad_token_id=0)
    if not eos:
        kwargs["min_new_tokens"] = new_tokens
    with torch.no_grad():
        model.generate(ids[:2], attention_mask=mask[:2], **{**kwargs, "max_new_tokens": 4})

    def run() -> tuple[float, int]:
        with torch.no_grad():
            torch.manual_seed(0)
            t = time.perf_counter()
            out = model.generate(ids, attention_mask=mask, **kwargs).cpu()  # waits for the GPU
            seconds = time.perf_counter() - t
        new = out[:, T:]
        if eos:  # count up to and including the first EOS, as s2jax's num_tokens does
            hit = torch.isin(new, torch.tensor(eos))
            first = torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.tensor(new.shape[1]))
            return seconds, int(first.sum())
        return seconds, new.numel()

    return run


def s2jax_runner(directory: Path, prompts, new_tokens: int, n: int, batch: int, sampling: dict,
                 continuous: bool = True, dtype: str = "float32", unroll: bool | None = None):
    """(a timed call () -> (seconds, tokens, sample lengths), the sampler, compile seconds)."""
    from s2jax.core.text_generator import SamplingParams
    from s2jax.sampling import Sampler

    model, tok = s2jax.load(directory, dtype=dtype)
    sampler = Sampler(model, tok, max_batch=batch, chat=False, continuous=continuous,
                      unroll_layers=unroll)
    params = SamplingParams(n=n, **sampling, max_new_tokens=new_tokens)

    def run():
        t = time.perf_counter()
        out = sampler.generate_ids(prompts, params)
        seconds = time.perf_counter() - t
        lengths = [s.num_tokens for row in out for s, _ in row]
        return seconds, sum(lengths), lengths

    before = dict(COMPILE)
    run()  # warm-up: compiles (or loads from a persistent compilation cache)
    return run, sampler, {k: COMPILE[k] - before[k] for k in COMPILE}


# JAX's own compile events, summed: seconds spent tracing, lowering and compiling (or loading a
# program from the persistent cache), and how many programs were loaded rather than compiled.
# (The warm-up run's time minus a timed run's was negative when programs came from the cache.)
COMPILE = {"seconds": 0.0, "cache_hits": 0}


def _count_compiles() -> None:
    from jax import monitoring
    from jax._src import dispatch

    events = (dispatch.JAXPR_TRACE_EVENT, dispatch.JAXPR_TO_MLIR_MODULE_EVENT,
              dispatch.BACKEND_COMPILE_EVENT)

    def on_duration(event: str, seconds: float, **_) -> None:
        if event in events:
            COMPILE["seconds"] += seconds

    def on_event(event: str, **_) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            COMPILE["cache_hits"] += 1

    monitoring.register_event_duration_secs_listener(on_duration)
    monitoring.register_event_listener(on_event)


def compile_note(c: dict) -> str:
    cached = f", {c['cache_hits']} from the compilation cache" if c["cache_hits"] else ""
    return f"compile {c['seconds']:.1f}s{cached}"


def best_of(runs: list[tuple]) -> tuple:
    """The fastest of repeated timed runs (the machine is shared: the least disturbed one)."""
    return min(runs, key=lambda r: r[0])


def prefill_memory_case() -> None:
    """(prefill): compiled bytes of one prefill, one pass vs chunked; nothing is allocated."""
    import jax
    import jax.numpy as jnp

    from s2jax.models.config import ModelConfig
    from s2jax.parallel.sharding import make_mesh
    from s2jax.run.plan import GiB, compiled_total, prefill_memory
    from s2jax.sampling.loop import PREFILL_CHUNK

    o = CASES["smollm2"][0]
    cfg = ModelConfig("LlamaForCausalLM", o["vocab_size"], o["hidden_size"],
                      o["intermediate_size"], o["num_hidden_layers"], o["num_attention_heads"],
                      o["num_key_value_heads"], o["hidden_size"] // o["num_attention_heads"],
                      tie_word_embeddings=True)
    batch, prompt, slots = 8, 4096, 4096 + 256
    mesh = make_mesh(devices=jax.devices()[:1])
    out = {}
    for chunk in (prompt, PREFILL_CHUNK):
        a = prefill_memory(cfg, mesh, batch, slots, prompt, jnp.float32, chunk=chunk)
        out[chunk] = (a.temp_size_in_bytes, compiled_total(a))
        print(f"(prefill) SmolLM2 shapes, {batch} prompts x {prompt} tokens into {batch} rows x "
              f"{slots} slots, fp32, chunk {chunk}: temp {out[chunk][0] / GiB:.2f} GiB, "
              f"peak {out[chunk][1] / GiB:.2f} GiB (weights + decode state + temp)")
    (t0, p0), (t1, p1) = out[prompt], out[PREFILL_CHUNK]
    print(f"    chunked / one pass: temp {t1 / t0:.3f}x, peak {p1 / p0:.3f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--no-transformers", dest="transformers", action="store_false",
                    help="s2jax only (profiling)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="timed runs per side, interleaved; the fastest of each is reported")
    ap.add_argument("--variants", default="",
                    help="also time s2jax variants, comma-separated: bf16 (bfloat16 weights and "
                    "KV cache), scan (decode with the layer scan, unroll_layers=False), unroll "
                    "(layers unrolled, unroll_layers=True; the default below 200M parameters)")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="where both sides run (gpu: JAX's first GPU and torch's cuda:0)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="weights and KV cache of both sides")
    args = ap.parse_args()
    os.environ["JAX_PLATFORMS"] = "cuda" if args.device == "gpu" else "cpu"
    import jax
    import torch

    _count_compiles()
    torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name() if args.device == "gpu" else "no GPU"
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} "
          f"({gpu}) with {torch.get_num_threads()} threads; {args.dtype}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}; host malloc {s2jax.core.host_memory.applied}")
    for case in args.cases.split(","):
        if case == "prefill":
            prefill_memory_case()
            continue
        real, shape_case = REAL_CASES.get(case, (None, case))
        overrides, batch, new_tokens, n, eos_fraction, *rest = CASES[shape_case]
        sampling = rest[0] if rest else DEFAULT_SAMPLING
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            if real:
                directory /= "model"  # `s2jax.save` makes its directory
                try:
                    eos, n_params, vocab = real_checkpoint(directory, real)
                except S2JaxError as e:  # not fetched
                    print(f"({case}) skipped: {e}")
                    continue
                head = f"({case}) {real} (real weights, no EOS)"
            else:
                eos, n_params = hf_llama_checkpoint(directory, overrides, eos_fraction)
                vocab, head = overrides["vocab_size"], f"({case}) Llama"
            prompts = prompts_for(batch, vocab)
            rows = batch * n
            head = (f"{head} {n_params / 1e6:.1f}M params, {batch} prompts x n={n}, "
                    f"{new_tokens} new tokens")
            hf = (hf_runner(directory, prompts, new_tokens, n, eos, sampling, args.device,
                            args.dtype)
                  if args.transformers else lambda: (float("nan"), 0))
            sides = {}  # name: (timed call, sampler, compile seconds)
            if case != "c":
                sides["s2jax"] = s2jax_runner(directory, prompts, new_tokens, n, batch, sampling,
                                              dtype=args.dtype)
                for variant in filter(None, args.variants.split(",")):
                    options = {"bf16": dict(dtype="bfloat16"), "scan": dict(unroll=False),
                               "unroll": dict(unroll=True)}
                    sides[f"s2jax {variant}"] = s2jax_runner(
                        directory, prompts, new_tokens, n, batch, sampling,
                        **{"dtype": args.dtype, **options[variant]})
            else:
                for continuous in (True, False):
                    sides[continuous] = s2jax_runner(directory, prompts, new_tokens, n, 64,
                                                     sampling, continuous, args.dtype)
            times = {name: [] for name in ("transformers", *sides)}
            for _ in range(args.repeats):  # interleaved: load changes hit both sides alike
                times["transformers"].append(hf())
                for name, (run, _, _) in sides.items():
                    times[name].append(run())
            hf_s, hf_tok = best_of(times["transformers"])
            hf_rate = hf_tok / hf_s
            if case != "c":
                print(f"{head}: transformers {hf_rate:,.0f} tok/s ({hf_tok} tok, {hf_s:.2f}s)")
                for name, (_, sampler, compile_s) in sides.items():
                    s, tok, _ = best_of(times[name])
                    rate = tok / s
                    print(f"    {name} {rate:,.0f} tok/s ({tok} tok, {s:.2f}s; "
                          f"{compile_note(compile_s)}, {sampler.compile_count} programs); ratio "
                          f"{rate / hf_rate:.2f}x")
                continue
            # (seconds, tokens, compile seconds, sampler, lengths) of continuous and static
            on, off = ((*best_of(times[c])[:2], sides[c][2], sides[c][1], best_of(times[c])[2])
                       for c in (True, False))
            lengths = np.array(on[4])
            print(f"{head}: lengths min {lengths.min()} median {int(np.median(lengths))} "
                  f"max {lengths.max()} (64 decode rows for {rows} samples)")
            for name, r in (("continuous", on), ("static", off)):
                print(f"    s2jax {name:10s} {r[1] / r[0]:,.0f} tok/s ({r[1]} tok, {r[0]:.2f}s; "
                      f"{compile_note(r[2])}, {r[3].compile_count} programs, "
                      f"{r[3].stats.prefills} prefills, {r[3].stats.decode_calls} decode calls, "
                      f"{r[3].stats.decode_steps} decode steps x 64 rows, mean cache window "
                      f"{r[3].stats.slot_steps / max(r[3].stats.decode_steps, 1):.0f})")
            print(f"    transformers static {hf_rate:,.0f} tok/s ({hf_tok} tok, {hf_s:.2f}s)")
            print(f"    continuous / static {(on[1] / on[0]) / (off[1] / off[0]):.2f}x; "
                  f"continuous / transformers {(on[1] / on[0]) / hf_rate:.2f}x")


if __name__ == "__main__":
    main()
