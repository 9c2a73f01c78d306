"""Evaluation of one system (a prompt program on a model) on labelled examples.

The paper's two metrics: accuracy (mean task score) and generated tokens per answer, counting
every stage's tokens (a System 2 answer pays for its reasoning). With `params.n > 1` the answer is
the majority over the samples (self-consistency, `s2jax.distill.vote.majority_vote` keeping the
lowest key on a tie); otherwise the single sample's answer.
Pure Python: the generator is any `TextGenerator`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from s2jax.core.text_generator import SamplingParams, TextGenerator
from s2jax.distill.vote import VoteConfig, majority_vote
from s2jax.methods.program import Program
from s2jax.methods.runner import run_program, trace_tokens
from s2jax.tasks.task import Example, Task


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """One row of the results table."""

    system: str  # "system1", "system2" or "distilled"
    method: str  # the prompt program's name
    accuracy: float  # mean score, in percent
    tokens_per_answer: float  # generated tokens per example, all stages and samples counted
    seconds: float  # wall time of the generation
    examples: int
    abstentions: int  # examples with no readable answer

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# Evaluation always answers: a tie takes the lowest key, so the answer never depends on order.
ANSWER_VOTE = VoteConfig(threshold=0.0, tie_policy="lowest")


def pick_answer(task: Task, texts: Sequence[str]) -> str | None:
    """The answer of one example: the majority over its samples' extracted answers."""
    return majority_vote([task.extract(t) for t in texts], ANSWER_VOTE, task.key).answer


def score_examples(
    program: Program,
    task: Task,
    examples: Sequence[Example],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    chat: bool = True,
    split: str | None = None,
) -> list[dict]:
    """Runs `program` on `examples`; one row per example, the report's per-item row (schema:
    `s2jax.report.rows`): id, item, template, split, answer, score, tokens, replies.

    `item` is the input an example's templates share (tasks with templates name it
    `base_question`), `template` the template's name or text (None without one), `split` the
    split the examples came from. `tokens` counts every generated token of the example, all
    stages and samples; `replies` are the final stage's texts, one per sample, so that a person
    can read why an answer was wrong or missing (an abstention) without running the model again.
    """
    traces = run_program(program, [ex.fields for ex in examples], generate, params, chat=chat)
    rows = []
    for ex, paths in zip(examples, traces, strict=True):
        replies = [p[program.final_stage].text for p in paths]
        answer = pick_answer(task, replies)
        rows.append({"id": ex.id, "item": ex.fields.get("base_question", ex.id),
                     "template": ex.fields.get("template"), "split": split, "answer": answer,
                     "score": float(task.score(answer, ex)),
                     "tokens": sum(trace_tokens(p) for p in paths), "replies": replies})
    return rows


def summarize(system: str, program: Program, rows: Sequence[dict], seconds: float) -> EvalResult:
    """The table row of `score_examples` rows."""
    n = max(len(rows), 1)
    return EvalResult(system, program.name, 100.0 * sum(r["score"] for r in rows) / n,
                      sum(r["tokens"] for r in rows) / n, seconds, len(rows),
                      sum(r["answer"] is None for r in rows))


def evaluate(
    system: str,
    program: Program,
    task: Task,
    examples: Sequence[Example],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    chat: bool = True,
) -> EvalResult:
    """Runs `program` on `examples` and scores the final answers against their gold.

    Args:
      system: the row's label ("system1", "system2", "distilled").
      program: the prompt program (for System 1, the task's direct prompt).
      task: extraction, keys and scoring.
      examples: labelled inputs.
      generate: the model's text generator.
      params: sampling for evaluation (greedy, n=1, by default in configs).
      chat: chat-template prompts.

    Returns:
      The accuracy, tokens per answer and time of this system.
    """
    start = time.perf_counter()
    rows = score_examples(program, task, examples, generate, params, chat=chat)
    return summarize(system, program, rows, time.perf_counter() - start)
