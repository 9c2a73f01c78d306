"""GSM8K (Cobbe et al. 2021): grade-school math word problems; the answer is the final number.

Rows are the hub dataset's ("openai/gsm8k", config "main"): {"question", "answer"}, where the
answer's reasoning ends with "#### <number>".
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterable, Mapping

from s2jax.core.errors import S2JaxError
from s2jax.methods.program import Stage
from s2jax.tasks.answers import after_answer_cue, strip_markdown
from s2jax.tasks.task import Example, HubSource, Task, exact_score

_NUM = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_NUMBER = re.compile(_NUM)
# Explicit final-answer markers, strongest first: the dataset's own "####", LaTeX \boxed{}.
_MARKED = (re.compile(rf"####\s*({_NUM})"), re.compile(rf"\\boxed\{{\s*({_NUM})\s*\}}"))


def normalize_number(text: str) -> str | None:
    """"1,234" -> "1234", "$5." -> "5", "2.50" -> "2.5", "-0" -> "0"; None if not a number."""
    cleaned = re.sub(r"[\s$,]", "", text).rstrip(".")
    try:
        d = decimal.Decimal(cleaned)
    except decimal.InvalidOperation:
        return None
    d = d.quantize(decimal.Decimal(1)) if d == d.to_integral_value() else d.normalize()
    return f"{d + 0:f}"  # + 0 turns -0 into 0


def extract(text: str) -> str | None:
    """The final number: "#### n", else \\boxed{n}, else the first number after the last
    "answer is"/"answer:", else the last number in the text; None when there is no number."""
    text = strip_markdown(text)
    for pattern in _MARKED:
        if found := pattern.findall(text):
            return normalize_number(found[-1])
    cued = after_answer_cue(text)
    if cued is not None and (m := _NUMBER.search(cued)):
        return normalize_number(m.group(0))
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def from_rows(rows: Iterable[Mapping]) -> list[Example]:
    """Examples from {"question", "answer"} rows; gold is the number after "####"."""
    out = []
    for i, row in enumerate(rows):
        if "question" not in row:
            raise S2JaxError(f"gsm8k row {i}: no 'question' field (has {sorted(row)})")
        gold = extract(str(row["answer"])) if row.get("answer") else None
        out.append(Example(str(row.get("id", f"gsm8k-{i}")), {"question": str(row["question"]),
                                                               "spec": ""},
                           (gold,) if gold is not None else ()))
    return out


TASK = Task(
    name="gsm8k",
    description="GSM8K math word problems, final number",
    # System 1: the bare question, answered without reasoning; the distilled target is the number.
    system1=Stage("answer", "{question}", source="s2jax (the question alone)"),
    extract=extract,
    score=lambda answer, ex: exact_score(answer, ex, lambda a: a),
    from_rows=from_rows,
    hub=HubSource("openai/gsm8k", "main", "train"),
)
