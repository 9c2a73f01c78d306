"""`s2jax convert SRC DST`: write any loadable model (GGUF, HF dir, pinned name) as an HF dir."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="write a GGUF file, HF dir or pinned model as an HF "
                       "checkpoint directory (safetensors) that transformers loads")
    p.add_argument("src", help="a .gguf file, a directory holding one, an HF dir, or a name "
                   "from `s2jax fetch-models --list`")
    p.add_argument("dst", help="the HF checkpoint directory to write: a new path, or one an "
                   "earlier convert wrote (replaced atomically)")
    p.add_argument("--dtype", default=None,
                   help="float32 | bfloat16 | float16 (default: as stored; float32 for GGUF)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    import s2jax
    from s2jax.core.ownership import MODEL, check_dir

    check_dir(args.dst, "dst", MODEL, whole=True)  # before the model is read
    model, tokenizer = s2jax.load(args.src, dtype=args.dtype)
    s2jax.save(model, tokenizer, args.dst)
    print(f"wrote {args.dst}")
    return 0
