"""`s2jax train --model DIR --data distill.parquet|.jsonl --out RUN_DIR [--<config field> ...]`.

Every `TrainConfig` field is a flag (`--learning-rate 3e-4`, `--no-pack`), and each field of a
section is one too (`--lora-rank 16 --lora-targets q,v`), so the CLI and the Python API cannot
drift apart. Re-running the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing


def _flag_type(hint):
    if typing.get_origin(hint) is tuple:  # "q,v": the config splits it
        return str, None
    args = typing.get_args(hint)
    return (type(args[0]), args) if args else (hint, None)


def register(sub: argparse._SubParsersAction) -> None:
    from s2jax.train.config import TrainConfig

    p = sub.add_parser("train", help="fine-tune a checkpoint on a distill set (SFT)")
    p.add_argument("--model", required=True, help="HF checkpoint directory to start from")
    p.add_argument("--data", required=True, help="distill set: .parquet or .jsonl with a "
                   "'messages' column (or 'prompt' + 'completion', or 'text')")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, model/)")
    p.add_argument("--eval-data", default=None, help="held-out set (default: --eval-examples "
                   "rows split off --data)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="weights of the exported model (default: as stored)")
    _add_flags(p, TrainConfig)
    p.set_defaults(func=run)


def _add_flags(p: argparse.ArgumentParser, config: type, prefix: str = "") -> None:
    """One flag per field of `config`; a section's fields get its name as a prefix."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            _add_flags(p, hints[f.name], name + "_")
            continue
        flag = "--" + name.replace("_", "-")
        kind, choices = _flag_type(hints[f.name])
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                           default=default, help=f"(default: {default})")
        else:
            p.add_argument(flag, dest=name, type=kind, choices=choices, default=default,
                           help=f"(default: {default})")


def _config(args: argparse.Namespace, config: type, prefix: str = ""):
    """The `config` dataclass the flags `_add_flags` made describe."""
    hints = typing.get_type_hints(config)
    return config(**{f.name: _config(args, hints[f.name], prefix + f.name + "_")
                     if dataclasses.is_dataclass(hints[f.name])
                     else getattr(args, prefix + f.name) for f in dataclasses.fields(config)})


def run(args: argparse.Namespace) -> int:
    import s2jax
    from s2jax.core.rundir import check_creatable, refuse_foreign_dir, writable_dir
    from s2jax.parallel.sharding import mesh_from_spec
    from s2jax.run.stages import finetune_stage
    from s2jax.train import TrainConfig, read_examples

    config = _config(args, TrainConfig)
    refuse_foreign_dir(args.out, "--out", "train_config.json")
    check_creatable(args.out, "--out")
    mesh = mesh_from_spec(config.mesh)
    examples = read_examples(args.data)
    held = read_examples(args.eval_data) if args.eval_data else None
    writable_dir(args.out, "--out")
    model, tokenizer = s2jax.load(args.model, dtype=args.dtype, mesh=mesh)
    finetune_stage(model, tokenizer, examples, config, args.out, eval_examples=held, mesh=mesh)
    print(f"s2jax train: done; run in {args.out}"
          + (f", model in {args.out}/model" if config.export else ""))
    return 0
