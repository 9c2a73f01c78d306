"""s2jax sampling against `transformers` `generate` (torch, CPU) on the same checkpoints/prompts.

    python bench/sampling.py [--cases a,b,c] [--threads 2]

Cases: (a) ~5M-param Llama, batch 64, 128 new tokens; (b) ~100M-param Llama, batch 16, 64 new
tokens; (c) 32 prompts x n=8 samples whose lengths differ widely, continuous batching on vs off.
Both sides sample (temperature 1, top-k 50) from identical random checkpoints written by
`transformers`; (a) and (b) have no EOS so every row makes exactly max_new_tokens tokens. Each
timed run follows an identical warm-up run, so compile time is excluded (and reported).

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
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

CASES = {  # name: (LlamaConfig overrides, batch, new tokens, n, eos fraction)
    "a": (dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=4), 64, 128, 1, 0.0),
    "b": (dict(vocab_size=8192, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
               num_attention_heads=12, num_key_value_heads=12), 16, 64, 1, 0.0),
    "c": (dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=4), 32, 256, 8, 1 / 48),
}


def word_tokenizer(vocab: int):
    """A word-level tokenizer over ids t0..t{V-1}: decoding any id is defined and cheap."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t1")


def make_checkpoint(directory: Path, overrides: dict, eos_fraction: float) -> list[int]:
    import torch
    import transformers

    config = transformers.LlamaConfig(max_position_embeddings=1024, bos_token_id=2,
                                      pad_token_id=0, tie_word_embeddings=False, **overrides)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    V = config.vocab_size
    eos = list(range(3, 3 + int(V * eos_fraction)))
    model.generation_config.eos_token_id = eos or None
    model.save_pretrained(directory, safe_serialization=True)
    gen = json.loads((directory / "generation_config.json").read_text())
    gen["eos_token_id"] = eos  # [] = no EOS (transformers drops a None)
    (directory / "generation_config.json").write_text(json.dumps(gen))
    word_tokenizer(V).save_pretrained(directory)
    n = sum(p.numel() for p in model.parameters())
    return eos, n


def prompts_for(batch: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(8, vocab, size=int(n)).tolist()
            for n in rng.integers(8, 33, size=batch)]


def run_hf(directory: Path, prompts, new_tokens: int, n: int, eos: list[int]) -> tuple[float, int]:
    """Seconds and generated tokens of one `generate` call (left-padded batch, n per prompt)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    T = max(map(len, prompts))
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    kwargs = dict(do_sample=True, temperature=1.0, top_k=50, max_new_tokens=new_tokens,
                  num_return_sequences=n, pad_token_id=0)
    if not eos:
        kwargs["min_new_tokens"] = new_tokens
    with torch.no_grad():
        model.generate(ids[:2], attention_mask=mask[:2], **{**kwargs, "max_new_tokens": 4})
        torch.manual_seed(0)
        t = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, **kwargs)
        seconds = time.perf_counter() - t
    new = out[:, T:]
    if eos:  # count up to and including the first EOS, as s2jax's num_tokens does
        hit = torch.isin(new, torch.tensor(eos))
        first = torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.tensor(new.shape[1]))
        return seconds, int(first.sum())
    return seconds, new.numel()


def run_s2jax(directory: Path, prompts, new_tokens: int, n: int, batch: int,
              continuous: bool = True):
    import s2jax
    from s2jax.sampling import Sampler
    from s2jax.text_generator import SamplingParams

    model, tok = s2jax.load(directory, dtype="float32")
    sampler = Sampler(model, tok, max_batch=batch, chat=False, continuous=continuous)
    params = SamplingParams(n=n, temperature=1.0, top_k=50, max_new_tokens=new_tokens)
    t = time.perf_counter()
    sampler.generate_ids(prompts, params)  # warm-up: compiles
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = sampler.generate_ids(prompts, params)
    seconds = time.perf_counter() - t
    lengths = [s.num_tokens for row in out for s, _ in row]
    return seconds, sum(lengths), first - seconds, sampler, lengths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--no-transformers", dest="transformers", action="store_false",
                    help="s2jax only (profiling)")
    args = ap.parse_args()
    import jax
    import torch

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; {os.cpu_count()} CPUs")
    for case in args.cases.split(","):
        overrides, batch, new_tokens, n, eos_fraction = CASES[case]
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            eos, n_params = make_checkpoint(directory, overrides, eos_fraction)
            prompts = prompts_for(batch, overrides["vocab_size"])
            rows = batch * n
            head = (f"({case}) Llama {n_params / 1e6:.1f}M params, {batch} prompts x n={n}, "
                    f"{new_tokens} new tokens")
            hf_s, hf_tok = (run_hf(directory, prompts, new_tokens, n, eos) if args.transformers
                            else (float("nan"), 0))
            hf_rate = hf_tok / hf_s
            if case != "c":
                s, tok, compile_s, sampler, _ = run_s2jax(directory, prompts, new_tokens, n, batch)
                rate = tok / s
                print(f"{head}: transformers {hf_rate:,.0f} tok/s ({hf_tok} tok, {hf_s:.2f}s); "
                      f"s2jax {rate:,.0f} tok/s ({tok} tok, {s:.2f}s; compile {compile_s:.1f}s, "
                      f"{sampler.compile_count} programs); ratio {rate / hf_rate:.2f}x")
                continue
            res = {}
            for continuous in (True, False):
                res[continuous] = run_s2jax(directory, prompts, new_tokens, n, 64, continuous)
            on, off = res[True], res[False]
            lengths = np.array(on[4])
            print(f"{head}: lengths min {lengths.min()} median {int(np.median(lengths))} "
                  f"max {lengths.max()} (64 decode rows for {rows} samples)")
            for name, r in (("continuous", on), ("static", off)):
                print(f"    s2jax {name:10s} {r[1] / r[0]:,.0f} tok/s ({r[1]} tok, {r[0]:.2f}s; "
                      f"compile {r[2]:.1f}s, {r[3].compile_count} programs, "
                      f"{r[3].stats.prefills} prefills, {r[3].stats.decode_calls} decode calls, "
                      f"{r[3].stats.decode_steps} decode steps x 64 rows, mean cache window "
                      f"{r[3].stats.slot_steps / max(r[3].stats.decode_steps, 1):.0f})")
            print(f"    transformers static {hf_rate:,.0f} tok/s ({hf_tok} tok, {hf_s:.2f}s)")
            print(f"    continuous / static {(on[1] / on[0]) / (off[1] / off[0]):.2f}x; "
                  f"continuous / transformers {(on[1] / on[0]) / hf_rate:.2f}x")


if __name__ == "__main__":
    main()
