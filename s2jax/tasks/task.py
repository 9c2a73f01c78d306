"""What a task is: its inputs, its System 1 prompt, how to read, compare and score its answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from s2jax.methods.program import Stage


@dataclasses.dataclass(frozen=True)
class Example:
    """One task input.

    Attributes:
      id: unique within a dataset; generations.jsonl and the distillation set refer to it.
      fields: what prompt templates may name (`question`, `spec`, `response_a`, ...).
      gold: accepted answers (aliases, or each human judge's verdict); empty when unlabeled.
    """

    id: str
    fields: dict[str, str]
    gold: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """A change of the input whose effect on the answer is known (BSM: swap A and B).

    Attributes:
      name: recorded in generations.jsonl and provenance.
      apply: the perturbed input x' of an input x.
      map_answer: an answer to x' expressed as an answer to x; an involution.
    """

    name: str
    apply: Callable[[Example], Example]
    map_answer: Callable[[str], str]


@dataclasses.dataclass(frozen=True)
class HubSource:
    """Where a task's data lives on the Hugging Face hub."""

    path: str
    config: str | None = None
    split: str = "train"


def _identity(answer: str) -> str:
    return answer


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: data, System 1 prompt, answer extraction, equivalence, training target, scoring.

    Attributes:
      name: as in `s2jax.tasks.TASKS`.
      description: one line.
      system1: the direct-answer prompt; the distillation set pairs it with the final answer.
      extract: the final answer in a model output, or None (abstain) when none can be read.
      score: credit of an extracted answer against an example's gold, in [0, 1].
      from_rows: examples from rows of the task's files (the published dataset's columns).
      key: normalisation under which two answers count as the same vote.
      target: the System 1 training target for an answer (the final answer only).
      hub: the default dataset on the hub, if any.
      synthesize: `synthesize(count, seed)` generates examples, for synthetic tasks.
      perturbation: the answer-preserving perturbation, for the consistency filter.
      splits: `splits(spec, seed)` gives the examples of a named split ("unlabeled",
        "validation", "test", see `s2jax.tasks.splits`) of data an installed package ships,
        disjoint across splits for one seed; used when a config names no source.
    """

    name: str
    description: str
    system1: Stage
    extract: Callable[[str], str | None]
    score: Callable[[str | None, Example], float]
    from_rows: Callable[[Iterable[Mapping]], list[Example]]
    key: Callable[[str], str] = _identity
    target: Callable[[str], str] = _identity
    hub: HubSource | None = None
    synthesize: Callable[[int, int], list[Example]] | None = None
    perturbation: Perturbation | None = None
    splits: Callable[[str | None, int], list[Example]] | None = None


def exact_score(answer: str | None, example: Example, key: Callable[[str], str]) -> float:
    """1.0 when the answer's key equals the key of any gold answer, else 0.0."""
    if answer is None:
        return 0.0
    return float(any(key(answer) == key(g) for g in example.gold))
