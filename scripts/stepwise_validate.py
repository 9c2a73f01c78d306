"""Choose a toy task's curriculum settings on validation inputs, never on the test inputs.

Takes the distillation set of a finished (or killed after its vote) `s2jax demo --tokens-per-stage
...` task run, fine-tunes the shipped toy model on it with the given curriculum, and evaluates
the student after every stage on validation inputs: distinct inputs of another seed that are
neither test nor unlabeled inputs and whose question the pretraining corpus never shows
(`s2jax.toy.validation`).

    PYTHONPATH=$PWD python scripts/stepwise_validate.py RUN/last_letter --lr 3e-4 \\
        --tokens-per-stage 16 --steps-per-stage 20 --out /tmp/val_ll
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task_dir", type=Path, help="a demo task run dir holding distill/")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tokens-per-stage", type=int, default=16)
    p.add_argument("--steps-per-stage", type=int, default=20)
    p.add_argument("--smoothing", type=float, default=0.0)
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--answer-only", type=int, default=0, metavar="STEPS",
                   help="instead: answer-only distillation of the same kept inputs, STEPS steps")
    args = p.parse_args()

    # imported after parsing: --help stays free of JAX and co.
    from s2jax.toy.validation import ValidationConfig, validate

    validate(args.task_dir, args.out, ValidationConfig(
        learning_rate=args.lr, tokens_per_stage=args.tokens_per_stage,
        steps_per_stage=args.steps_per_stage, smoothing=args.smoothing, count=args.count,
        seed=args.seed, answer_only=args.answer_only))


if __name__ == "__main__":
    main()
