"""`s2jax train --model DIR --data distill.parquet|.jsonl --out RUN_DIR [--<config field> ...]`.

Token-level distillation: `--kd-divergence reverse_kl [--teacher DIR]` (`TrainConfig.kd`).

Every `TrainConfig` field is a flag (`--learning-rate 3e-4`, `--no-pack`), and each field of a
section is one too (`--lora-rank 16 --lora-targets q,v`), so the CLI and the Python API cannot
drift apart. Re-running the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse

from s2jax.core.overrides import add_field_flags
from s2jax.core.storage import require_local
from s2jax.train.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a checkpoint on a distill set (SFT)")
    p.add_argument("--model", required=True, help="HF checkpoint directory to start from")
    p.add_argument("--data", required=True, help="distill set: .parquet or .jsonl with a "
                   "'messages' column (or 'prompt' + 'completion', or 'text')")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, model/)")
    p.add_argument("--eval-data", default=None, help="held-out set (default: --eval-examples "
                   "rows split off --data)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="weights of the exported model (default: as stored)")
    p.add_argument("--teacher", default=None, help="with --kd-divergence: the frozen teacher "
                   "(checkpoint dir, .gguf or fetched name, the student's tokenizer; default: "
                   "the student as loaded); rows' teacher_messages are its context")
    add_field_flags(p, TrainConfig)
    p.set_defaults(func=run)


def train_config(args: argparse.Namespace):
    """The `TrainConfig` the given field flags describe (the others keep their defaults)."""
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.overrides import field_changes, field_flag, override
    from s2jax.train.config import TrainConfig

    return override(TrainConfig(), field_changes(args, TrainConfig), name=field_flag)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    import s2jax
    from s2jax.core.errors import S2JaxError
    from s2jax.models.loading import identity
    from s2jax.parallel.sharding import mesh_from_spec
    from s2jax.run.stages import check_train_dir, finetune_stage
    from s2jax.train import read_examples

    config = train_config(args)
    if args.teacher and not config.kd.enabled:
        raise S2JaxError(f"--teacher {args.teacher}: expected --kd-divergence too (a teacher "
                         "teaches through a divergence; without one training is plain SFT)")
    require_local(args.out, "--out", "a local or network directory (`s2jax run --run-dir "
                  "gs://...` keeps a whole run on Cloud Storage)")
    check_train_dir(args.out, "--out", identity(args.model))
    if args.teacher:
        identity(args.teacher)  # a teacher that is not there is refused before any work
    mesh = mesh_from_spec(config.mesh)
    examples = read_examples(args.data)
    held = read_examples(args.eval_data) if args.eval_data else None
    model, tokenizer = s2jax.load(args.model, dtype=args.dtype, mesh=mesh)
    teacher, teacher_tokenizer = (s2jax.load(args.teacher, mesh=mesh) if args.teacher
                                  else (None, None))
    finetune_stage(model, tokenizer, examples, config, args.out, eval_examples=held, mesh=mesh,
                   teacher=teacher, teacher_tokenizer=teacher_tokenizer)
    print(f"s2jax train: done; run in {args.out}"
          + (f", model in {args.out}/model" if config.export else ""))
    return 0
