"""Universal Self-Consistency: one more model stage that picks the most consistent sample.

After a program ran with N samples per input, the USC stage shows the model the N final outputs of
one input (numbered from 0) and asks which is most consistent with the others; `parse_choice`
reads the index back. `s2jax.distill.vote.usc_vote` then keeps that sample's answer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from s2jax.core.text_generator import SamplingParams, TextGenerator
from s2jax.methods import prompts
from s2jax.methods.program import Stage
from s2jax.methods.runner import StageResult, generate_checked

USC_STAGE = Stage("usc", prompts.USC_SELECT, source=prompts.USC_SOURCE)

_CHOICE = re.compile(r"most consistent response is\W*response\W*(\d+)", re.IGNORECASE)
_ANY = re.compile(r"\bresponse\W*(\d+)", re.IGNORECASE)


def usc_fields(question: str, responses: Sequence[str]) -> dict[str, str]:
    """Template fields of the USC stage for one input."""
    listed = "\n".join(f"Response {i}: {r}" for i, r in enumerate(responses))
    return {"question": question, "responses": listed}


def parse_choice(text: str, n: int) -> int | None:
    """The index the USC stage chose, or None if it named no response in [0, n).

    Args:
      text: the USC stage's output.
      n: how many responses it was shown.

    Returns:
      The chosen index. The requested sentence is read first; failing that, the first
      "Response k" mentioned.
    """
    m = _CHOICE.search(text) or _ANY.search(text)
    if m is None:
        return None
    k = int(m.group(1))
    return k if 0 <= k < n else None


@dataclasses.dataclass(frozen=True)
class UscResult:
    """The USC stage's output for one input and the index parsed from it."""

    result: StageResult
    choice: int | None

    def to_json(self) -> dict:
        return {**self.result.to_json(), "choice": self.choice}


def run_usc(
    questions: Sequence[str],
    responses: Sequence[Sequence[str]],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    chat: bool = True,
) -> list[UscResult]:
    """Runs the USC stage over all inputs in one generator call (one sample per input).

    Args:
      questions: the question of each input, as the user asked it.
      responses: the N final outputs of each input, in sample order.
      generate: the text generator.
      params: sampling parameters (`n` is ignored: one selection per input).
      chat: chat messages or plain-text prompts.

    Returns:
      One `UscResult` per input.
    """
    fields: list[Mapping[str, str]] = [
        usc_fields(q, r) for q, r in zip(questions, responses, strict=True)
    ]
    prompts_ = [USC_STAGE.render(f, chat=chat) for f in fields]
    out = generate_checked(generate, prompts_, dataclasses.replace(params, n=1), USC_STAGE)
    results = []
    for (s,), r in zip(out, responses, strict=True):
        res = StageResult(s.text, s.num_tokens, s.finish_reason)
        results.append(UscResult(res, parse_choice(s.text, len(r))))
    return results
