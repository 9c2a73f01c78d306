"""Generations -> the filtered System 1 distillation set, with its provenance and vote statistics.

Each kept input becomes one chat example: the task's System 1 prompt (no reasoning asked for)
followed by an assistant turn with no reasoning in it: the final answer (`task.target(answer)`,
target "answer"), or the final-stage reply of the first sample that voted for the winner
(target "reply": a text the model itself writes, for free-form answers whose normalised key,
e.g. a city, is not what the model would say). Target "trace" keeps that sample's reasoning
instead, for stepwise internalization (`s2jax.distill.trace`): every stage's output, the mark
"####" and the answer, with the reasoning also in the row's `trace` field. The output
directory, written atomically as a whole, holds:

    train.parquet     columns id: str, messages: [{role, content}], answer: str
                      (target "trace": and trace: str; for token-level context distillation,
                      teacher_messages: the System 2 program's final prompt of the winning
                      sample, then the same answer)
    provenance.json   method, task, N, filter, threshold, tie policy, model, sampling,
                      config hash, counts
    vote_stats.json   `s2jax.distill.vote.VoteStats`: kept, drop reasons, samples, abstentions
    decisions.jsonl   one line per input: id and its `s2jax.distill.vote.Decision`
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from s2jax.core.atomic import write_json, write_jsonl
from s2jax.core.errors import S2JaxError
from s2jax.core.hashing import json_hash
from s2jax.core.ownership import DISTILL_SET, replace_dir
from s2jax.distill.trace import sample_trace, trace_reply
from s2jax.distill.vote import (
    Answer,
    Decision,
    VoteConfig,
    VoteStats,
    majority_vote,
    perturbation_vote,
    usc_vote,
    vote_stats,
)
from s2jax.methods.program import Program
from s2jax.methods.records import final_texts
from s2jax.tasks.task import Task

Filter = Literal["majority", "usc", "perturbation"]
FILTERS: tuple[str, ...] = ("majority", "usc", "perturbation")
Target = Literal["answer", "reply", "trace"]
TARGETS: tuple[str, ...] = ("answer", "reply", "trace")
PARQUET = "train.parquet"


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Which filter decides, and how majorities are taken."""

    # the label-free filter: majority vote over the samples, Universal Self-Consistency, or
    # consistency under the task's input perturbation
    filter: Filter = "majority"
    # how a majority is taken (threshold, ties)
    vote: VoteConfig = VoteConfig()
    target: Target = "answer"  # the assistant turn: the task's target of the answer, the
    # winning sample's own final reply, or its whole trace and the answer (module docstring)

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {self.filter!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")


@dataclasses.dataclass(frozen=True)
class DistillSet:
    """The examples kept, every input's decision, and the statistics."""

    examples: list[dict]
    decisions: list[dict]
    stats: VoteStats


def _answers(task: Task, samples: Sequence[Mapping], final_stage: str) -> list[Answer]:
    return [task.extract(t) for t in final_texts(samples, final_stage)]


def decide(record: Mapping, task: Task, config: DistillConfig) -> tuple[Decision, list[Answer]]:
    """The filter's decision for one generations.jsonl record, and the answers it saw.

    Args:
      record: one generations.jsonl line (see `s2jax.methods.records`).
      task: the task whose extractor reads the answers.
      config: the filter.

    Returns:
      The decision and the extracted answers (perturbed ones appended for that filter).
    """
    answers = _answers(task, record["samples"], record["final_stage"])
    where = f"record {record['id']!r}"
    if config.filter == "majority":
        return majority_vote(answers, config.vote, task.key), answers
    if config.filter == "usc":
        if "usc" not in record:
            raise S2JaxError(f"{where} has no 'usc' field: generate with --usc for --filter usc")
        return usc_vote(answers, record["usc"].get("choice"), task.key), answers
    if "perturbed" not in record or task.perturbation is None:
        raise S2JaxError(f"{where} has no 'perturbed' samples (or task {task.name} has no "
                         "perturbation): generate with --perturb for --filter perturbation")
    other = _answers(task, record["perturbed"]["samples"], record["final_stage"])
    decision = perturbation_vote(answers, other, task.perturbation.map_answer, config.vote,
                                 task.key)
    return decision, answers + other


def winner_index(record: Mapping, task: Task, answers: Sequence[Answer], answer: str) -> int:
    """The index of the first sample (of the original input) whose answer has the winner's
    key."""
    want = task.key(answer)
    return next(i for i, (_, a) in enumerate(zip(record["samples"], answers, strict=False))
                if a is not None and task.key(a) == want)


def winning_sample(record: Mapping, task: Task, answers: Sequence[Answer], answer: str
                   ) -> Mapping:
    """The first sample (of the original input) whose answer has the winner's key."""
    return record["samples"][winner_index(record, task, answers, answer)]


def system2_context(program: Program, record: Mapping, sample: int) -> list[dict]:
    """The chat the teacher read at its final stage for `sample` of `record`: the last stage's
    prompt over the input's fields and that sample's earlier stages' outputs (for S2A, the
    answer prompt holding the rewritten question, without the user's opinion)."""
    final = program.stages[-1]
    if final.fan_out is not None or record["final_stage"] != final.name:
        raise S2JaxError(f"record {record['id']}: no single final prompt of {program.name} "
                         f"to show a teacher (final stage {record['final_stage']!r})")
    stages = record["samples"][sample]["stages"]
    fields = dict(record["fields"])
    for stage in program.stages[:-1]:
        text = stages[stage.name]["text"]
        fields[stage.name] = stage.clean(text) if stage.clean else text
    messages = final.render(fields, chat=True)
    assert isinstance(messages, list)
    return messages


def winning_reply(record: Mapping, task: Task, answers: Sequence[Answer], answer: str) -> str:
    """The final-stage text of the first sample whose answer has the winner's key."""
    sample = winning_sample(record, task, answers, answer)
    return final_texts([sample], record["final_stage"])[0].strip()


def system1_example(task: Task, id: str, fields: Mapping[str, str], answer: str,
                    reply: str | None = None, trace: str | None = None) -> dict:
    """One chat example: the task's System 1 prompt -> the final answer (or a trace and it).

    Args:
      task: the task.
      id: the input's id.
      fields: the input's template fields.
      answer: the kept answer.
      reply: the assistant turn to train on; None uses `task.target(answer)`.
      trace: the start of `reply` that a removal curriculum may remove (target "trace").

    Returns:
      A row with `id`, `messages` (system?, user, assistant), `answer` (and `trace`).
    """
    messages = task.system1.render(fields, chat=True)
    assert isinstance(messages, list)
    content = task.target(answer) if reply is None else reply
    row = {"id": id, "answer": answer,
           "messages": [*messages, {"role": "assistant", "content": content}]}
    return row if trace is None else {**row, "trace": trace}


def _example(record: Mapping, task: Task, config: DistillConfig, answers: Sequence[Answer],
             answer: str) -> dict:
    """The System 1 example of a kept input, with the assistant turn `config.target` asks for."""
    reply = trace = None
    if config.target == "reply":
        reply = winning_reply(record, task, answers, answer)
    elif config.target == "trace":
        trace = sample_trace(winning_sample(record, task, answers, answer))
        reply = trace_reply(trace, task.target(answer))
    return system1_example(task, record["id"], record["fields"], answer, reply, trace)


def build_distill_set(records: Sequence[Mapping], task: Task, config: DistillConfig,
                      context: Program | None = None) -> DistillSet:
    """Applies the filter to every record and makes System 1 examples of the kept ones.

    Args:
      records: generations.jsonl records.
      task: their task.
      config: the filter.
      context: the System 2 program that made them, to give each example the teacher's own
        context (`teacher_messages`: its final prompt for the winning sample, then the same
        answer) for token-level context distillation; None: no teacher context.

    Returns:
      The distillation set, decisions and statistics.
    """
    examples, decisions, seen = [], [], []
    for record in records:
        decision, answers = decide(record, task, config)
        seen.append(answers)
        decisions.append(decision)
        if decision.kept:
            assert decision.answer is not None
            example = _example(record, task, config, answers, decision.answer)
            if context is not None:
                prompt = system2_context(context, record,
                                         winner_index(record, task, answers, decision.answer))
                example["teacher_messages"] = [*prompt, example["messages"][-1]]
            examples.append(example)
    rows = [{"id": r["id"], **d.to_json()} for r, d in zip(records, decisions, strict=True)]
    return DistillSet(examples, rows, vote_stats(decisions, seen))


def provenance(
    records: Sequence[Mapping],
    task: Task,
    config: DistillConfig,
    dset: DistillSet,
    *,
    generations: str,
    model: str | None = None,
    sampling: Mapping | None = None,
) -> dict:
    """What produced a distillation set: method, N, filter, threshold, model, config hash, counts.

    Args:
      records: the generations it was built from.
      task: the task.
      config: the filter.
      dset: the built set.
      generations: path of the generations file.
      model: the checkpoint that generated them, when known.
      sampling: the sampling parameters, when known.

    Returns:
      A JSON-able dict.
    """
    methods = sorted({r["method"] for r in records})
    ns = sorted({len(r["samples"]) for r in records})
    hashed = {
        "task": task.name, "method": methods, "n": ns, "filter": config.filter,
        "threshold": config.vote.threshold, "tie_policy": config.vote.tie_policy,
        "target": config.target,
        "model": model, "sampling": dict(sampling or {}),
    }
    return {
        **hashed,
        "method": methods[0] if len(methods) == 1 else methods,
        "n": ns[0] if len(ns) == 1 else ns,
        "generations": generations,
        "config_hash": json_hash(hashed),
        "counts": {"inputs": dset.stats.inputs, "kept": dset.stats.kept,
                   "dropped": dset.stats.inputs - dset.stats.kept,
                   "examples": len(dset.examples)},
    }


def write_distill_set(out_dir: str | os.PathLike, dset: DistillSet, prov: Mapping) -> Path:
    """Writes the directory described in the module docstring, atomically.

    Args:
      out_dir: the output directory: fresh, or a set s2jax wrote from the same generations file
        and nobody changed since (replaced as a whole).
      dset: the distillation set.
      prov: its provenance.

    Returns:
      The path of train.parquet.
    """
    import datasets  # heavy; only when writing

    datasets.disable_progress_bars()  # a bar for writing a few rows would only be noise

    chat = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    features = datasets.Features({
        "id": datasets.Value("string"),
        "messages": chat,
        "answer": datasets.Value("string"),
        **({"trace": datasets.Value("string")}
           if any("trace" in row for row in dset.examples) else {}),
    })
    if dset.examples and "teacher_messages" in dset.examples[0]:
        features["teacher_messages"] = chat
    columns = {k: [row[k] for row in dset.examples] for k in features}
    with replace_dir(out_dir, DISTILL_SET, key=prov.get("generations"),
                     what="distillation set dir") as tmp:
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(tmp / PARQUET))
        write_json(tmp / "provenance.json", dict(prov))
        write_json(tmp / "vote_stats.json", dset.stats.to_json())
        write_jsonl(tmp / "decisions.jsonl", dset.decisions)
    return Path(out_dir) / PARQUET
