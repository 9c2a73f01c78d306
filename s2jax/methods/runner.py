"""Runs a prompt program over a batch of inputs: one `TextGenerator` call per stage.

Sampling across stages: the first stage draws `params.n` samples per input; every later stage draws
ONE continuation per earlier sample path (and per item for a fan-out stage). So a program with N
samples yields exactly N final answers per input, each with its own reasoning path, which is what
majority voting over N samples assumes. Later stages use seed `params.seed + stage index` so that
their random streams differ from the first stage's, and continue path s as sample s of their
prompt (`first_sample`): two paths that wrote the same text still draw independently, and path s
depends only on the input and s, so the first 4 paths of an N=16 run are an N=4 run's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Sample, SamplingParams, TextGenerator
from s2jax.methods.program import ITEM, Program, Stage


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One stage's output on one sample path (fan-out: its items' outputs, joined)."""

    text: str
    num_tokens: int
    finish_reason: str  # "length" if any part of it ran out of tokens, else "stop"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping) -> StageResult:
        return cls(str(obj["text"]), int(obj["num_tokens"]), str(obj["finish_reason"]))


Trace = dict[str, StageResult]  # stage name -> output, in stage order, for one sample path


def _join(items: Sequence[str | None], samples: Sequence[Sample]) -> StageResult:
    """Merges a fan-out stage's per-item samples into one result."""
    if len(samples) == 1 and len(items) == 1 and items[0] is None:
        s = samples[0]
        return StageResult(s.text, s.num_tokens, s.finish_reason)
    text = "\n\n".join(f"{item}\n{s.text}" for item, s in zip(items, samples, strict=True))
    tokens = sum(s.num_tokens for s in samples)
    reason = "length" if any(s.finish_reason == "length" for s in samples) else "stop"
    return StageResult(text, tokens, reason)


def generate_checked(
    generate: TextGenerator, prompts: list, params: SamplingParams, stage: Stage,
    first_sample: list[int] | None = None,
) -> list[list[Sample]]:
    """One generator call, checked against the `TextGenerator` contract."""
    if stage.max_new_tokens is not None:
        params = dataclasses.replace(params, max_new_tokens=stage.max_new_tokens)
    out = (generate(prompts, params) if first_sample is None
           else generate(prompts, params, first_sample=first_sample))
    if len(out) != len(prompts) or any(len(s) != params.n for s in out):
        raise RuntimeError(
            f"stage {stage.name!r}: generator returned {[len(s) for s in out]} samples for "
            f"{len(prompts)} prompts with n={params.n}"
        )
    return out


def _check_inputs(program: Program, inputs: Sequence[Mapping[str, str]]) -> None:
    """Every input has the program's fields, and none named like one of its stages."""
    names = {s.name for s in program.stages}
    for i, fields in enumerate(inputs):
        missing = sorted(program.input_fields() - fields.keys())
        clash = sorted(names & fields.keys())
        if missing or clash:
            raise S2JaxError(
                f"input {i} for method {program.name!r}: missing field(s) {missing}"
                + (f", fields {clash} clash with stage names" if clash else "")
                + f"; it has {sorted(fields)}"
            )


def run_program(
    program: Program,
    inputs: Sequence[Mapping[str, str]],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    chat: bool = True,
) -> list[list[Trace]]:
    """Runs every stage of `program` over all inputs, batched: one generator call per stage.

    Args:
      program: the method.
      inputs: one mapping of template fields per input.
      generate: any `TextGenerator` (the JAX sampler, or a fake in tests).
      params: sampling parameters; `params.n` samples are drawn per input by the first stage.
      chat: render prompts as chat messages (True) or as plain text.

    Returns:
      traces[i][s]: the outputs of every stage on sample path s of input i (`params.n` paths).
    """
    _check_inputs(program, inputs)
    first, *rest = program.stages
    prompts = [first.render(fields, chat=chat) for fields in inputs]
    samples = generate_checked(generate, prompts, params, first)
    traces = [
        [{first.name: _join([None], [s])} for s in per_input] for per_input in samples
    ]
    one = dataclasses.replace(params, n=1)
    for k, stage in enumerate(rest, start=1):
        jobs = []  # (input index, sample index, items) in prompt order
        prompts, paths = [], []
        for i, fields in enumerate(inputs):
            for s, trace in enumerate(traces[i]):
                earlier = {
                    st.name: st.clean(trace[st.name].text) if st.clean else trace[st.name].text
                    for st in program.stages[:k]
                }
                ctx = {**fields, **earlier}
                fan = stage.fan_out
                items = fan.split(earlier[fan.over]) if fan else [None]
                for item in items:
                    fields_k = ctx if item is None else {**ctx, ITEM: item}
                    prompts.append(stage.render(fields_k, chat=chat))
                    paths.append(s)
                jobs.append((i, s, items))
        stage_params = dataclasses.replace(one, seed=params.seed + k)
        out = generate_checked(generate, prompts, stage_params, stage, paths)
        pos = 0
        for i, s, items in jobs:
            traces[i][s][stage.name] = _join(items, [o[0] for o in out[pos:pos + len(items)]])
            pos += len(items)
    return traces


def trace_tokens(trace: Trace) -> int:
    """Tokens generated along one sample path, all stages counted."""
    return sum(r.num_tokens for r in trace.values())
