"""`s2jax generate`: n samples per prompt of a JSONL file, written as JSONL in input order."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.prompt_file import read_prompts
from s2jax.core.storage import require_local


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample continuations of the prompts of a JSONL file")
    p.add_argument("--model", required=True, help="HF checkpoint directory")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter directory for --model: "
                   "samples from base + adapter, unmerged")
    p.add_argument("--input", required=True,
                   help='JSONL: {"id", "prompt"} or {"id", "messages": [{"role", "content"}]}')
    p.add_argument("--output", required=True, help='JSONL: {"id", "samples": [...]}')
    p.add_argument("--n", type=int, default=1, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    p.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=True,
                   help="render prompts with the tokenizer's chat template (default) or raw")
    p.add_argument("--keep-special-tokens", action="store_true",
                   help="keep special tokens (<pad>, template markers) in the text; by default "
                        "they are dropped, as transformers and vLLM do")
    p.add_argument("--max-batch", type=int, default=64, help="decode rows at most")
    p.add_argument("--max-len", type=int, default=None,
                   help="cache slots per row (default: the model's max positions)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="weights dtype (default: as stored)")
    p.add_argument("--mesh", default="", help="e.g. data=2,fsdp=2,tensor=2 (default: 1 device)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from tqdm import tqdm

    import s2jax
    from s2jax.core.ownership import GENERATE_OUTPUT, check_file, open_owned_file
    from s2jax.core.text_generator import SamplingParams
    from s2jax.parallel.sharding import mesh_from_spec
    from s2jax.sampling import Sampler
    from s2jax.sampling.chat import encode_prompts

    ids, prompts = read_prompts(Path(args.input))
    try:
        params = SamplingParams(n=args.n, temperature=args.temperature, top_k=args.top_k,
                                top_p=args.top_p, min_p=args.min_p,
                                max_new_tokens=args.max_new_tokens, stop=tuple(args.stop),
                                seed=args.seed)
    except ValueError as e:
        raise S2JaxError(f"sampling options: {e}") from None
    if args.max_batch < 1:
        raise S2JaxError(f"--max-batch {args.max_batch}: expected >= 1")
    if args.max_len is not None and args.max_len < 2:
        raise S2JaxError(f"--max-len {args.max_len}: expected >= 2 (prompt and one new token)")
    require_local(args.output, "--output", "a local or network file")
    check_file(args.output, "--output", GENERATE_OUTPUT)  # fresh, or an earlier run's
    mesh = mesh_from_spec(args.mesh)
    # the weights alone (no Flax module): sampling is `forward` over them
    model, tokenizer = s2jax.load_weights(args.model, dtype=args.dtype, mesh=mesh)
    weights = None
    if args.adapter:
        from s2jax.models.lora import load_peft

        _, adapters = load_peft(model.config, args.adapter, mesh=mesh)
        weights = {**model.params(), **adapters}
    sampler = Sampler(model, tokenizer, mesh=mesh, max_batch=args.max_batch,
                      max_len=args.max_len, chat=args.chat,
                      keep_special_tokens=args.keep_special_tokens)
    # prompts that do not render and a call that cannot fit fail before the progress bar
    sampler.check_max_new_tokens(params, "--max-new-tokens")
    token_ids = encode_prompts(tokenizer, prompts, chat=args.chat)
    sampler.check_memory(sampler.plan([len(x) for x in token_ids], params))

    start, tokens = time.perf_counter(), 0
    with tqdm(total=len(prompts), unit="prompt", desc="generate", dynamic_ncols=True) as bar:
        def progress(prompts_done: int, new_tokens: int) -> None:
            nonlocal tokens
            tokens += new_tokens
            bar.set_postfix_str(f"{tokens / (time.perf_counter() - start):.0f} tok/s",
                                refresh=False)
            bar.update(prompts_done)

        rows = sampler.generate_ids(token_ids, params, weights=weights, progress=progress)
    samples = [[sample for sample, _ in row] for row in rows]
    with open_owned_file(args.output, GENERATE_OUTPUT, what="--output") as f:
        for i, row in zip(ids, samples, strict=True):
            f.write(json.dumps({"id": i, "samples": [s.to_json() for s in row]},
                               ensure_ascii=False) + "\n")
    return 0
