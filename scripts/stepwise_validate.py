"""Choose a toy task's curriculum settings on validation inputs, never on the test inputs.

Takes the distillation set of a finished (or killed after its vote) `s2jax demo --tokens-per-stage
...` task run, fine-tunes the shipped toy model on it with the given curriculum, and evaluates
the student after every stage on validation inputs: distinct inputs of another seed that are
neither test nor unlabeled inputs and whose question the pretraining corpus never shows.

    PYTHONPATH=$PWD python scripts/stepwise_validate.py RUN/last_letter --lr 3e-4 \\
        --tokens-per-stage 16 --steps-per-stage 20 --out /tmp/val_ll
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

VALIDATION_SEED = 3


def validation(name: str, count: int):
    """`count` validation inputs of toy task `name` (see the module docstring)."""
    from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED, TASKS, held_out, input_key
    from s2jax.toy.corpus import CorpusConfig, task_corpus

    t = TASKS[name]
    test, unlabeled = held_out(t, MAX_TEST, MAX_UNLABELED)
    skip = {input_key(t, ex) for ex in test + unlabeled}
    corpus = "\n".join(m["content"] for chat in task_corpus(t, CorpusConfig()) for m in chat)
    out = []
    for ex in t.generate(40 * count, VALIDATION_SEED, t.size):
        key = input_key(t, ex)
        seen = ex.fields["question"] in corpus if name != "judge" else (
            f"{ex.fields['response_a']}\n[Answer B]\n{ex.fields['response_b']}" in corpus)
        if key not in skip and not seen:
            skip.add(key)
            out.append(ex)
            if len(out) == count:
                return out
    raise SystemExit(f"fewer than {count} validation inputs")


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

    import s2jax
    from s2jax.core.atomic import write_jsonl
    from s2jax.core.text_generator import SamplingParams
    from s2jax.distill.evaluate import score_examples, summarize
    from s2jax.distill.trace import trace_task
    from s2jax.methods import method
    from s2jax.run.stepwise import StageEvaluations
    from s2jax.sampling import Sampler
    from s2jax.tasks.toy.world import TASKS
    from s2jax.toy.demo import DemoConfig, base_model_dir, task_distillation
    from s2jax.train import finetune, read_examples

    name = json.loads((args.task_dir / "config.json").read_text())["config"]["task"] \
        if (args.task_dir / "config.json").is_file() else args.task_dir.name
    demo = dataclasses.replace(DemoConfig(tasks=(name,)), learning_rate=args.lr,
                               tokens_per_stage=args.tokens_per_stage,
                               steps_per_stage=args.steps_per_stage, smoothing=args.smoothing,
                               seed=args.seed)
    if args.answer_only:
        demo = dataclasses.replace(demo, tokens_per_stage=0, finetune_steps=args.answer_only)
    d = task_distillation(name, demo, base_model_dir())
    train = dataclasses.replace(d.train, export=False, progress=False)
    examples = read_examples(args.task_dir / "distill" / "train.parquet")
    if args.answer_only:  # the same kept inputs and answers, the final answer as the target
        target = TASKS[name].task.target
        examples = [{"messages": [*r["messages"][:-1], {"role": "assistant",
                                                        "content": target(r["answer"])}]}
                    for r in examples]
    inputs = validation(name, args.count)
    model, tokenizer = s2jax.load(base_model_dir())
    sampler = Sampler(model, tokenizer, max_batch=64, max_len=512)
    task, program = trace_task(TASKS[name].task), method("system1", TASKS[name].task.system1)
    params = SamplingParams(temperature=0.0, max_new_tokens=128)
    start = time.perf_counter()

    def evaluate_as(system: str):
        rows = score_examples(program, task, inputs, sampler, params)
        write_jsonl(args.out / f"{system}.jsonl", rows)
        row = summarize(system, program, rows, time.perf_counter() - start)
        print(f"{system}: {row.accuracy:.1f}% at {row.tokens_per_answer:.1f} tokens "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        return row

    staged = StageEvaluations(evaluate_as, sampler, model, train.curriculum)
    finetune(model, tokenizer, examples, train, args.out / "train",
             on_stage=None if args.answer_only else staged)
    if args.answer_only:
        sampler.set_params(model.params())
        staged.rows[0] = {"stage": "answer-only", **evaluate_as("answer-only").to_json()}
    (args.out / "validation.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "stages": staged.table()}, indent=1))


if __name__ == "__main__":
    main()
