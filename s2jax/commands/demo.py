"""`s2jax demo`: System 2 distillation end to end on the shipped toy model, in minutes on a CPU."""

from __future__ import annotations

import argparse

from s2jax.core.storage import require_local


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
    p.add_argument("--tokens-per-stage", type=int, default=None,
                   help="stepwise internalization: train on the kept samples' traces and remove "
                        "this many trace tokens per stage (default 0: distil answers only)")
    p.add_argument("--steps-per-stage", type=int, default=None,
                   help="fine-tuning steps per curriculum stage (default 40)")
    p.add_argument("--smoothing", type=float, default=None,
                   help="removal smoothing lambda (default 0: off; the paper used 4)")
    p.add_argument("--seed", type=int, default=None,
                   help="System 2 sampling and fine-tuning data order (default 0)")
    p.add_argument("--seeds", type=int, default=1,
                   help="run the demo for this many seeds (--seed, --seed + 1, ...) into "
                        "OUT/seed<s>/ and write the table over seeds (mean +- sd, each seed's "
                        "paired distilled - System 1 interval) and `s2jax report` into OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.overrides import override
    from s2jax.toy.demo import QUICK, DemoConfig, run_demo
    from s2jax.toy.seeds import run_demo_seeds

    # option -> DemoConfig field
    fields = {"test": "test", "unlabeled": "unlabeled", "samples": "samples",
              "steps": "finetune_steps", "seed": "seed", "learning_rate": "learning_rate",
              "lora_rank": "lora_rank", "tasks": "tasks",
              "tokens_per_stage": "tokens_per_stage", "steps_per_stage": "steps_per_stage",
              "smoothing": "smoothing"}
    flag_of = {field: "--" + opt.replace("_", "-") for opt, field in fields.items()}
    config = override(QUICK if args.quick else DemoConfig(),
                      {field: getattr(args, opt) for opt, field in fields.items()
                       if getattr(args, opt) is not None}, name=flag_of.__getitem__)
    require_local(args.out, "--out", "a local or network directory")
    if args.seeds == 1:
        run_demo(args.out, config, model_dir=args.model, progress=not args.no_progress)
        print(f"wrote {args.out}/results.json, results.png, table.md")
        return 0
    run_demo_seeds(args.out, config, args.seeds, model_dir=args.model,
                   progress=not args.no_progress)
    print(f"wrote {args.out}/results.json, table.md, report.md, report.json, report.png and "
          f"seed<s>/ per seed")
    return 0
