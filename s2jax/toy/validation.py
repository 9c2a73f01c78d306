"""Choosing a toy task's curriculum settings on validation inputs, never on the test inputs.

`validation_inputs` draws distinct inputs of another seed that are neither test nor unlabeled
inputs and whose question the pretraining corpus never shows. `validate` fine-tunes the shipped
toy model on the distillation set of a finished (or killed after its vote) `s2jax demo
--tokens-per-stage ...` task run with the given curriculum, and evaluates the student on them
after every stage; with `answer_only` steps it distils the same kept inputs' final answers
instead and evaluates once. `scripts/stepwise_validate.py` is its command line.

Artifacts under the output directory: <system>.jsonl (every validation answer of a stage, or
of the answer-only student), train/ (the fine-tuning run), validation.json (config and rows).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from s2jax.core.atomic import write_json, write_jsonl
from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.evaluate import EvalResult, score_examples, summarize
from s2jax.distill.trace import trace_task
from s2jax.methods import method
from s2jax.models.loading import load
from s2jax.run.stepwise import StageEvaluations
from s2jax.sampling import Sampler
from s2jax.tasks.task import Example
from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED, TASKS, held_out, input_key
from s2jax.toy.corpus import CorpusConfig, task_corpus
from s2jax.toy.demo import DemoConfig, base_model_dir, task_distillation
from s2jax.train import finetune, read_examples

VALIDATION_SEED = 3  # the inputs' seed: the demo draws test and unlabeled inputs from others


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """The settings one validation run tries (defaults: the demo's stepwise settings)."""

    learning_rate: float = 1e-3
    tokens_per_stage: int = 16
    steps_per_stage: int = 20
    smoothing: float = 0.0  # removal smoothing lambda; 0: off
    count: int = 60  # validation inputs
    seed: int = 0  # the demo seed of the run whose distillation set is trained on
    answer_only: int = 0  # > 0: answer-only distillation of the same kept inputs, these steps


def _in_corpus(name: str, example: Example, corpus: str) -> bool:
    """Whether the pretraining corpus shows `example`'s question (judge: its answer pair)."""
    f = example.fields
    text = (f"{f['response_a']}\n[Answer B]\n{f['response_b']}" if name == "judge"
            else f["question"])
    return text in corpus


def validation_inputs(name: str, count: int) -> list[Example]:
    """`count` validation inputs of toy task `name` (see the module docstring)."""
    t = TASKS[name]
    test, unlabeled = held_out(t, MAX_TEST, MAX_UNLABELED)
    skip = {input_key(t, ex) for ex in test + unlabeled}
    corpus = "\n".join(m["content"] for chat in task_corpus(t, CorpusConfig()) for m in chat)
    out = []
    for ex in t.generate(40 * count, VALIDATION_SEED, t.size):
        key = input_key(t, ex)
        if key not in skip and not _in_corpus(name, ex, corpus):
            skip.add(key)
            out.append(ex)
            if len(out) == count:
                return out
    raise S2JaxError(f"toy {name}: fewer than {count} validation inputs")


def task_name(task_dir: Path) -> str:
    """The toy task of a demo task run dir (its config.json, else the directory's name)."""
    config = task_dir / "config.json"
    return json.loads(config.read_text())["config"]["task"] if config.is_file() \
        else task_dir.name


def student_examples(task_dir: Path, name: str, answer_only: bool) -> list[dict]:
    """The run's distillation rows; answer-only: the same kept inputs, the final answer as the
    assistant turn (no trace)."""
    examples = read_examples(task_dir / "distill" / "train.parquet")
    if not answer_only:
        return examples
    target = TASKS[name].task.target
    return [{"messages": [*r["messages"][:-1], {"role": "assistant",
                                                "content": target(r["answer"])}]}
            for r in examples]


def validate(task_dir: str | Path, out: str | Path, config: ValidationConfig = ValidationConfig(),
             *, log=print) -> dict:
    """Trains on `task_dir`'s distillation set and evaluates on validation inputs (module
    docstring); returns (and writes) validation.json's contents."""
    task_dir, out = Path(task_dir), Path(out)
    name = task_name(task_dir)
    demo = DemoConfig(tasks=(name,), learning_rate=config.learning_rate, seed=config.seed,
                      tokens_per_stage=0 if config.answer_only else config.tokens_per_stage,
                      steps_per_stage=config.steps_per_stage, smoothing=config.smoothing,
                      finetune_steps=config.answer_only or DemoConfig.finetune_steps)
    train = dataclasses.replace(task_distillation(name, demo, base_model_dir()).train,
                                export=False, progress=False)
    inputs = validation_inputs(name, config.count)
    model, tokenizer = load(base_model_dir())
    sampler = Sampler(model, tokenizer, max_batch=64, max_len=512)
    task, program = trace_task(TASKS[name].task), method("system1", TASKS[name].task.system1)
    params = SamplingParams(temperature=0.0, max_new_tokens=128)
    start = time.perf_counter()

    def evaluate_as(system: str) -> EvalResult:
        rows = score_examples(program, task, inputs, sampler, params)
        write_jsonl(out / f"{system}.jsonl", rows)
        row = summarize(system, program, rows, time.perf_counter() - start)
        log(f"{system}: {row.accuracy:.1f}% at {row.tokens_per_answer:.1f} tokens "
            f"({time.perf_counter() - start:.0f} s)")
        return row

    staged = StageEvaluations(evaluate_as, sampler, model, train.curriculum)
    finetune(model, tokenizer, student_examples(task_dir, name, bool(config.answer_only)),
             train, out / "train", on_stage=None if config.answer_only else staged)
    if config.answer_only:
        sampler.set_params(model.params())
        staged.rows[0] = {"stage": "answer-only", **evaluate_as("answer-only").to_json()}
    result = {"task_dir": str(task_dir), "config": dataclasses.asdict(config),
              "stages": staged.table()}
    write_json(out / "validation.json", result)
    return result
