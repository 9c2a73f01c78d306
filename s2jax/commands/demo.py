"""`s2jax demo`: System 2 distillation end to end on the shipped toy model, in minutes on a CPU."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="distil System 2 into System 1 on the shipped toy model")
    p.add_argument("--out", default="s2jax_demo", help="output directory (default: s2jax_demo)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: every stage and artifact on a few inputs and steps")
    p.add_argument("--model", default=None, help="base model dir (default: the shipped one)")
    p.add_argument("--tasks", default=None, help="comma-separated toy tasks (default: all)")
    p.add_argument("--test", type=int, default=None, help="held-out inputs per task")
    p.add_argument("--unlabeled", type=int, default=None, help="unlabeled inputs per task")
    p.add_argument("--samples", type=int, default=None, help="System 2 samples per input (N)")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps per task")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="fine-tuning peak learning rate (default 1e-3)")
    p.add_argument("--lora-rank", type=int, default=None,
                   help="fine-tune LoRA adapters of this rank (alpha = 2 x rank) on all seven "
                        "projections instead of every weight")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import math

    from s2jax.core.errors import S2JaxError
    from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED
    from s2jax.toy.demo import QUICK, DemoConfig, run_demo

    config = QUICK if args.quick else DemoConfig()
    overrides = {"test": args.test, "unlabeled": args.unlabeled, "samples": args.samples,
                 "finetune_steps": args.steps, "seed": args.seed,
                 "learning_rate": args.learning_rate, "lora_rank": args.lora_rank,
                 "tasks": tuple(args.tasks.split(",")) if args.tasks else None}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    for field, most in (("test", MAX_TEST), ("unlabeled", MAX_UNLABELED)):
        if not 1 <= getattr(config, field) <= most:
            raise S2JaxError(f"--{field} {getattr(config, field)}: expected 1..{most}")
    if config.samples < 1 or config.finetune_steps < 1:
        raise S2JaxError("--samples and --steps: expected >= 1")
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise S2JaxError(f"--learning-rate {config.learning_rate}: expected a finite number > 0")
    if config.lora_rank < 0:
        raise S2JaxError(f"--lora-rank {config.lora_rank}: expected >= 0 (0: full fine-tuning)")
    run_demo(args.out, config, model_dir=args.model, progress=not args.no_progress)
    print(f"wrote {args.out}/results.json, results.png, table.md")
    return 0
