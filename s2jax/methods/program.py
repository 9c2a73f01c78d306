"""Prompt programs: a method is a frozen tuple of stages, each a template over named fields.

A stage's template is a `str.format` template. It may name the input's fields (`{question}`,
`{response_a}`, ...) and the outputs of earlier stages by stage name (`{rephrase}`). A stage with
`fan_out` runs once per item that `split` finds in an earlier stage's output (BSM's solve runs
once per criterion of the branch stage's plan); its template may then name `{item}`, and its
output is the items' outputs joined, each under its item.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Mapping

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Message, Prompt

ITEM = "item"  # the field a fan-out stage's template uses for the current item


def template_fields(template: str) -> frozenset[str]:
    """The field names a `str.format` template refers to."""
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if not name.isidentifier():
                raise ValueError(f"template field {{{name}}} is not a plain name: {template!r}")
            names.add(name)
    return frozenset(names)


_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(\S.*?)\s*$")


def split_list_items(text: str, max_items: int = 5) -> list[str]:
    """Numbered or bulleted lines of `text` (at most `max_items`); the whole text if none."""
    items = [m.group(1) for line in text.splitlines() if (m := _LIST_ITEM.match(line))]
    return items[:max_items] if items else [text.strip()]


@dataclasses.dataclass(frozen=True)
class FanOut:
    """Run a stage once per item of an earlier stage's output."""

    over: str  # name of the earlier stage whose output is split
    split: Callable[[str], list[str]] = split_list_items


@dataclasses.dataclass(frozen=True)
class Stage:
    """One model call per sample path: a user turn (and optional system turn) from a template.

    Attributes:
      name: how later stages and generations.jsonl refer to this stage's output.
      template: `str.format` template of the user turn.
      system: optional system turn, also a template.
      fan_out: run once per item of an earlier stage's output (see module docstring).
      clean: applied to the generated text before later stages see it (e.g. strip quotes).
      max_new_tokens: overrides the run's budget for this stage (e.g. a short verdict).
      source: where the prompt text comes from (paper, repository, or "s2jax" when ours).
    """

    name: str
    template: str
    system: str | None = None
    fan_out: FanOut | None = None
    clean: Callable[[str], str] | None = None
    max_new_tokens: int | None = None
    source: str = "s2jax"

    def fields(self) -> frozenset[str]:
        """Fields this stage's templates refer to."""
        names = template_fields(self.template)
        if self.system is not None:
            names |= template_fields(self.system)
        return names

    def render(self, fields: Mapping[str, str], *, chat: bool = True) -> Prompt:
        """The prompt for one sample path: chat messages, or plain text when `chat` is False.

        Args:
          fields: input fields and earlier stages' outputs (and `item` for a fan-out stage).
          chat: messages for a chat template, or one string (system turn, blank line, user turn).

        Returns:
          A `Prompt` for a `TextGenerator`.
        """
        missing = sorted(self.fields() - fields.keys())
        if missing:
            raise S2JaxError(
                f"stage {self.name!r} needs field(s) {missing}; the input has {sorted(fields)}"
            )
        user = self.template.format_map(fields)
        system = None if self.system is None else self.system.format_map(fields)
        if not chat:
            return user if system is None else f"{system}\n\n{user}"
        messages: list[Message] = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": user})
        return messages


@dataclasses.dataclass(frozen=True)
class Program:
    """A method: stages run in order; the last stage's output holds the final answer.

    Attributes:
      name: the method's name (as in `s2jax.methods.METHODS`).
      stages: the stages, in order.
      description: one line for `--help` and provenance.
    """

    name: str
    stages: tuple[Stage, ...]
    description: str = ""

    def __post_init__(self):
        if not self.stages:
            raise ValueError(f"program {self.name!r} has no stages")
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen or stage.name == ITEM:
                raise ValueError(f"program {self.name!r}: stage name {stage.name!r} is reused")
            if stage.fan_out is not None and stage.fan_out.over not in seen:
                raise ValueError(
                    f"program {self.name!r}: stage {stage.name!r} fans out over "
                    f"{stage.fan_out.over!r}, which is not an earlier stage"
                )
            seen.add(stage.name)

    @property
    def final_stage(self) -> str:
        return self.stages[-1].name

    def input_fields(self) -> frozenset[str]:
        """Fields the program needs from each input (not produced by its own stages)."""
        produced = {s.name for s in self.stages} | {ITEM}
        return frozenset().union(*(s.fields() for s in self.stages)) - produced
