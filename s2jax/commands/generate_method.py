"""`s2jax generate-method`: run System 1 or a System 2 method over a task -> generations.jsonl."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from s2jax.methods.programs import METHOD_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    from s2jax.tasks import TASKS

    p = sub.add_parser(
        "generate-method",
        help="run a method over a task's inputs; write generations.jsonl (every stage's text)",
    )
    p.add_argument("--model", required=True, help="HF checkpoint directory")
    p.add_argument("--method", required=True, choices=METHOD_NAMES)
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", default=None,
                     help="data file, directory, hub id or tfds:NAME[:SPLIT] "
                          "(default: the task's hub dataset)")
    src.add_argument("--synthetic", type=int, default=None, metavar="COUNT",
                     help="generate COUNT inputs (last_letter, coin_flip)")
    p.add_argument("--split", default=None, help="dataset split (default: the task's)")
    p.add_argument("--data-dir", default=None, help="TFDS data directory")
    p.add_argument("--limit", type=int, default=None, help="use the first LIMIT inputs")
    p.add_argument("--output", required=True, help="generations.jsonl to write")
    p.add_argument("--n", type=int, default=1, help="samples per input (first stage)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--usc", action="store_true",
                   help="also run the Universal Self-Consistency selection stage")
    p.add_argument("--perturb", action="store_true",
                   help="also run each input's perturbation (pairwise tasks: A and B swapped)")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=True,
                   help="apply the tokenizer's chat template (default) or use plain text")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: as stored)")
    p.set_defaults(func=run)


def meta_path(output: str | Path) -> Path:
    """Where the run's settings are written beside generations.jsonl."""
    output = Path(output)
    return output.with_name(output.stem + ".meta.json")


def run(args: argparse.Namespace) -> int:
    from s2jax.atomic import write_json, write_jsonl
    from s2jax.errors import S2JaxError
    from s2jax.methods.programs import method
    from s2jax.methods.records import generate_records
    from s2jax.tasks import TASKS, load_examples
    from s2jax.text_generator import SamplingParams

    task = TASKS[args.task]
    program = method(args.method, task.system1)
    if args.synthetic is not None:
        if task.synthesize is None:
            raise S2JaxError(f"--synthetic: task {task.name} has no generator; use --input")
        examples = task.synthesize(args.synthetic, args.seed)
    else:
        examples = load_examples(task, args.input, split=args.split, limit=args.limit,
                                 data_dir=args.data_dir)
    if args.perturb and task.perturbation is None:
        raise S2JaxError(f"--perturb: task {task.name} has no perturbation")
    try:
        params = SamplingParams(n=args.n, temperature=args.temperature, top_k=args.top_k,
                                top_p=args.top_p, min_p=args.min_p,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
    except ValueError as e:
        raise S2JaxError(str(e)) from e

    import s2jax
    from s2jax.sampling import Sampler  # JAX: imported only when generating

    model, tokenizer = s2jax.load(args.model, dtype=args.dtype)
    sampler = Sampler(model, tokenizer, chat=args.chat)
    records = generate_records(
        program, examples, sampler, params, task=task.name,
        perturbation=task.perturbation if args.perturb else None, usc=args.usc, chat=args.chat,
    )
    write_jsonl(args.output, records)
    write_json(meta_path(args.output), {
        "task": task.name, "method": program.name, "model": str(args.model),
        "inputs": len(records), "sampling": dataclasses.asdict(params),
        "usc": args.usc, "perturb": args.perturb, "chat": args.chat,
    })
    tokens = sum(s["num_tokens"] for r in records for s in r["samples"])
    print(f"{len(records)} inputs x {params.n} samples of {program.name} on {task.name}: "
          f"{tokens} tokens -> {args.output}")
    return 0
