"""`s2jax generate-method`: System 1 or a System 2 method over a task -> generations.jsonl.

The generation stage of the pipeline (`s2jax.run.stages.generate_stage`): labels stripped, written
shard by shard, so rerunning the same command after a kill resumes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from s2jax.core.storage import require_local
from s2jax.methods.catalog import METHOD_NAMES
from s2jax.tasks import TASKS


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="weights dtype (default: as stored)")
    p.add_argument("--shard-size", type=int, default=128,
                   help="inputs per shard: a rerun resumes after the last finished shard")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from s2jax.core.errors import S2JaxError
    from s2jax.core.shards import check_resumable
    from s2jax.core.text_generator import SamplingParams
    from s2jax.methods.catalog import method
    from s2jax.methods.records import check_meta, generations_meta, write_meta
    from s2jax.run.config import MAX_SYNTHETIC, DataConfig
    from s2jax.run.pipeline import task_examples
    from s2jax.run.stages import generate_stage, stage_key
    from s2jax.tasks import TASKS, load_examples

    task = TASKS[args.task]
    program = method(args.method, task.system1)
    if args.perturb and task.perturbation is None:
        raise S2JaxError(f"--perturb: task {task.name} has no perturbation")
    if args.shard_size < 1:
        raise S2JaxError(f"--shard-size {args.shard_size}: expected >= 1")
    try:
        params = SamplingParams(n=args.n, temperature=args.temperature, top_k=args.top_k,
                                top_p=args.top_p, min_p=args.min_p,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
    except ValueError as e:
        raise S2JaxError(f"sampling options: {e}") from None
    if args.synthetic is not None:
        if not 1 <= args.synthetic <= MAX_SYNTHETIC:
            raise S2JaxError(f"--synthetic {args.synthetic}: expected 1..{MAX_SYNTHETIC}")
        examples = task_examples(task, DataConfig(synthetic=args.synthetic, seed=args.seed),
                                 "--synthetic")
    else:
        if args.limit is not None and args.limit < 1:
            raise S2JaxError(f"--limit {args.limit}: expected >= 1")
        examples = load_examples(task, args.input, split=args.split, limit=args.limit,
                                 data_dir=args.data_dir)
    meta = generations_meta(task=task.name, method=program.name, model=str(args.model),
                            inputs=len(examples), sampling=params, usc=args.usc,
                            perturb=args.perturb, chat=args.chat, shard_size=args.shard_size)
    require_local(args.output, "--output", "a local or network file")
    output = check_resumable(args.output, "--output")
    check_meta(output, meta)

    import s2jax
    from s2jax.sampling import Sampler  # JAX: imported only when generating

    model, tokenizer = s2jax.load(args.model, dtype=args.dtype)
    sampler = Sampler(model, tokenizer, chat=args.chat)
    sampler.check_max_new_tokens(params, "--max-new-tokens")
    records = generate_stage(program, task, examples, sampler, params, path=output,
                             key=stage_key(model=str(Path(args.model).resolve()),
                                           dtype=args.dtype),
                             shard_size=args.shard_size, perturb=args.perturb, usc=args.usc,
                             chat=args.chat, progress=args.progress)
    write_meta(output, meta)
    tokens = sum(s["num_tokens"] for r in records for s in r["samples"])
    print(f"{len(records)} inputs x {params.n} samples of {program.name} on {task.name}: "
          f"{tokens} tokens -> {args.output}")
    return 0

