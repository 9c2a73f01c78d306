"""`s2jax inspect DIR`: load a checkpoint (optionally onto a mesh) and print what it holds."""

from __future__ import annotations

import argparse

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="load an HF checkpoint dir and summarise it")
    p.add_argument("model", help="HF checkpoint directory")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="weights dtype (default: as stored)")
    p.add_argument("--mesh", default="", help="e.g. data=2,fsdp=2,tensor=2 (default: 1 device)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    import s2jax
    from s2jax.parallel.sharding import mesh_from_spec

    mesh = mesh_from_spec(args.mesh)
    model, tokenizer = s2jax.load(args.model, dtype=args.dtype, mesh=mesh)
    cfg = model.config
    params = model.params()
    n = sum(int(np.prod(v.shape)) for v in params.values())
    print(f"{cfg.architecture}: {n:,} parameters, {cfg.num_layers} layers, d={cfg.hidden_size}, "
          f"heads={cfg.num_heads}/{cfg.num_kv_heads}x{cfg.head_dim}, vocab={cfg.vocab_size}, "
          f"dtype={params['embed'].dtype}, tokenizer vocab={len(tokenizer)}")
    for name, value in params.items():
        print(f"  {name:22s} {str(tuple(value.shape)):24s} {value.sharding.spec}")
    return 0
