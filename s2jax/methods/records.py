"""The generations.jsonl schema: one line per input, every stage's text and token counts.

    {"id": str, "task": str, "method": str, "final_stage": str,
     "fields": {name: str},              # the input's template fields (System 1 prompt too)
     "gold": [str],                      # empty when unlabeled
     "samples": [{"stages": {stage: {"text", "num_tokens", "finish_reason"}},
                  "num_tokens": int}],   # N sample paths; num_tokens sums the stages
     "usc": {"text", "num_tokens", "finish_reason", "choice": int | null},   # optional
     "perturbation": str, "perturbed": {"fields": {...}, "samples": [...]}}  # optional

A sample's final answer is read from `samples[s]["stages"][final_stage]["text"]`.
`generate_records` builds the records by running a method: original and perturbed inputs go
through the same `run_program` call, so every stage is still one generator call over all inputs
and samples; the USC stage, when asked for, is one more call.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_json_object, read_objects
from s2jax.core.ownership import GENERATIONS_META, check_file, write_owned_json
from s2jax.core.shards import index_path, is_complete
from s2jax.core.text_generator import SamplingParams, TextGenerator
from s2jax.methods.program import Program
from s2jax.methods.runner import StageResult, Trace, run_program, trace_tokens
from s2jax.methods.usc import UscResult, run_usc

if TYPE_CHECKING:
    from s2jax.tasks.task import Example, Perturbation


def samples_json(traces: Sequence[Trace]) -> list[dict]:
    """The "samples" list of a record."""
    return [
        {"stages": {name: r.to_json() for name, r in t.items()}, "num_tokens": trace_tokens(t)}
        for t in traces
    ]


def generation_record(
    *,
    id: str,
    task: str,
    method: str,
    final_stage: str,
    fields: Mapping[str, str],
    gold: Sequence[str],
    traces: Sequence[Trace],
    usc: UscResult | None = None,
    perturbation: str | None = None,
    perturbed_fields: Mapping[str, str] | None = None,
    perturbed_traces: Sequence[Trace] | None = None,
) -> dict:
    """One generations.jsonl line (see the module docstring)."""
    record = {
        "id": id, "task": task, "method": method, "final_stage": final_stage,
        "fields": dict(fields), "gold": list(gold), "samples": samples_json(traces),
    }
    if usc is not None:
        record["usc"] = usc.to_json()
    if perturbed_traces is not None:
        record["perturbation"] = perturbation
        record["perturbed"] = {"fields": dict(perturbed_fields or {}),
                               "samples": samples_json(perturbed_traces)}
    return record


def generate_records(
    program: Program,
    examples: Sequence[Example],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    task: str,
    perturbation: Perturbation | None = None,
    usc: bool = False,
    chat: bool = True,
) -> list[dict]:
    """Runs `program` over `examples` (and their perturbations) and builds the records.

    Args:
      program: the method.
      examples: the task's inputs.
      generate: the text generator.
      params: sampling parameters; `params.n` samples per input.
      task: the task's name, recorded in each line.
      perturbation: also run every perturbed input (for the consistency filter).
      usc: run the Universal Self-Consistency stage over each input's N final outputs.
      chat: chat-template prompts (True) or plain text.

    Returns:
      One record per example, in example order.
    """
    perturbed = [perturbation.apply(ex) for ex in examples] if perturbation else []
    inputs = [ex.fields for ex in examples] + [ex.fields for ex in perturbed]
    traces = run_program(program, inputs, generate, params, chat=chat)
    original, other = traces[:len(examples)], traces[len(examples):]
    usc_results = None
    if usc:
        responses = [[trace[program.final_stage].text for trace in t] for t in original]
        questions = [ex.fields.get("question", "") for ex in examples]
        usc_results = run_usc(questions, responses, generate, params, chat=chat)
    records = []
    for i, ex in enumerate(examples):
        records.append(generation_record(
            id=ex.id, task=task, method=program.name, final_stage=program.final_stage,
            fields=ex.fields, gold=ex.gold, traces=original[i],
            usc=usc_results[i] if usc_results else None,
            perturbation=perturbation.name if perturbation else None,
            perturbed_fields=perturbed[i].fields if perturbation else None,
            perturbed_traces=other[i] if perturbation else None,
        ))
    return records


def final_texts(samples: Sequence[Mapping], final_stage: str) -> list[str]:
    """The final stage's text of each sample."""
    return [s["stages"][final_stage]["text"] for s in samples]


def _check(record: Mapping, where: str) -> None:
    """Raises S2JaxError naming the first missing or malformed field."""
    for key, kind in (("id", str), ("task", str), ("method", str), ("final_stage", str),
                      ("fields", dict), ("samples", list)):
        if not isinstance(record.get(key), kind):
            raise S2JaxError(f"{where}: field {key!r} missing or not a {kind.__name__}")
    groups = [record["samples"]]
    if "perturbed" in record:
        groups.append(record["perturbed"].get("samples", []))
    for samples in groups:
        for s in samples:
            stage = s.get("stages", {}).get(record["final_stage"])
            if stage is None:
                raise S2JaxError(f"{where}: a sample has no stage {record['final_stage']!r}")
            StageResult.from_json(stage)


def read_generations(path: str | os.PathLike) -> list[dict]:
    """All records of a generations.jsonl file, checked against the schema.

    Args:
      path: the file.

    Returns:
      The records, in file order.
    """
    records = []
    for where, record in read_objects(path, "a generations.jsonl of s2jax generate-method"):
        try:
            _check(record, where)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise S2JaxError(f"{where}: malformed sample ({e})") from e
        records.append(record)
    return records


def meta_path(generations: str | os.PathLike) -> Path:
    """Where the settings that made a generations file are written beside it."""
    generations = Path(generations)
    return generations.with_name(generations.stem + ".meta.json")


def generations_meta(*, task: str, method: str, model: str, inputs: int,
                     sampling: SamplingParams, usc: bool, perturb: bool, chat: bool,
                     shard_size: int) -> dict:
    """The settings that made a generations file, as its meta file holds them. A rerun with
    other settings must not resume it (`check_meta`); `vote` reads `model` and `sampling`
    into the distill set's provenance. As JSON reads it back (tuples as lists), so that a
    rerun of a finished generation compares equal to what it wrote."""
    meta = {"task": task, "method": method, "model": model, "inputs": inputs,
            "sampling": dataclasses.asdict(sampling), "usc": usc, "perturb": perturb,
            "chat": chat, "shard_size": shard_size}
    return json.loads(json.dumps(meta))


def check_meta(generations: str | os.PathLike, meta: Mapping) -> None:
    """Refuses to resume (or replace) a generations file made with settings other than
    `meta`; an unreadable meta file counts as other settings, and a file there that s2jax did
    not write (no "s2jax" field) is never replaced (`s2jax.core.ownership`)."""
    path = meta_path(generations)
    if check_file(path, "--output's meta file", GENERATIONS_META, marked_inside=True) \
            and _read_meta(path) != {"s2jax": GENERATIONS_META, **meta}:
        raise S2JaxError(f"{path}: exists and records other settings; refusing to "
                         "overwrite it (pick another --output)")


def write_meta(generations: str | os.PathLike, meta: Mapping) -> None:
    """Writes `meta` beside the generations file, marked as s2jax's (its "s2jax" field)."""
    write_owned_json(meta_path(generations), GENERATIONS_META, dict(meta),
                     what="--output's meta file")


def read_meta(generations: str | os.PathLike) -> dict:
    """The settings recorded beside a generations file; {} when it has no meta file."""
    path = meta_path(generations)
    if not path.exists():
        return {}
    meta = read_json_object(path, "the settings generate-method recorded")
    meta.pop("s2jax", None)  # the mark, not a setting
    return meta


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def read_finished_generations(path: str | os.PathLike) -> list[dict]:
    """`read_generations` of a file whose generation finished: a sharded file still being
    written (or killed) has an index without its completion line, and is refused."""
    if index_path(path).exists() and not is_complete(path):
        raise S2JaxError(f"{path}: generation did not finish (its .shards index has no "
                         "completion line); rerun generate-method to resume it")
    return read_generations(path)
