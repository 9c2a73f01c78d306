"""Coin flip ("Flip means reverse."), in the RaR authors' format (the paper's RaR task).

Question: "A coin is heads up. roxas does not flip the coin. scheideman flips the coin.  Is the
coin still heads up? Flip means reverse." Answer: "no". Rows in the authors' processed format
({"question", "answer"}, data/coin_val_*.json) or in the raw format they started from
({"inputs": " Q: ... ", "targets": "yes"}, raw_data/coin_val.json) load with `from_rows`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping

from s2jax.core.errors import S2JaxError
from s2jax.methods import prompts
from s2jax.methods.program import Stage
from s2jax.tasks.answers import after_answer_cue, strip_markdown
from s2jax.tasks.names import first_names
from s2jax.tasks.task import Example, Task, exact_score

PEOPLE_PER_QUESTION = 2  # as in the authors' data
SUFFIX = "Flip means reverse."  # the authors append this to every question
# The authors' config.json answer-format line for coin flip (key "coin_val").
SPEC = "Answer the Yes or No question."


def question(actions: Iterable[tuple[str, bool]]) -> str:
    """The question for (name, flips) actions; two spaces before "Is", as in the authors' data."""
    steps = " ".join(
        f"{name} {'flips' if flips else 'does not flip'} the coin." for name, flips in actions
    )
    return f"A coin is heads up. {steps}  Is the coin still heads up? {SUFFIX}"


def synthesize(count: int, seed: int = 0, people: int = PEOPLE_PER_QUESTION) -> list[Example]:
    """`count` questions; each person flips with probability 1/2; names in lower case."""
    rng = random.Random(seed)
    pool = first_names()
    out = []
    for i in range(count):
        actions = [(n.lower(), rng.random() < 0.5) for n in rng.sample(pool, people)]
        heads = sum(f for _, f in actions) % 2 == 0
        out.append(Example(f"coin_flip-{seed}-{i}", {"question": question(actions), "spec": SPEC},
                           ("yes" if heads else "no",)))
    return out


def from_rows(rows: Iterable[Mapping]) -> list[Example]:
    """Examples from the authors' processed rows or raw rows (see module docstring)."""
    out = []
    for i, row in enumerate(rows):
        if "question" in row:
            q, gold = str(row["question"]), row.get("answer")
        elif "inputs" in row:
            q = re.sub(r"^\s*Q:\s*", "", str(row["inputs"])).rstrip() + " " + SUFFIX
            gold = row.get("targets")
        else:
            raise S2JaxError(
                f"coin_flip row {i}: expected 'question' or 'inputs' (has {sorted(row)})"
            )
        out.append(Example(str(row.get("id", f"coin_flip-{i}")), {"question": q, "spec": SPEC},
                           (str(gold).lower(),) if gold else ()))
    return out


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# "The coin is still heads up." answers the question without the words yes or no.
_SIDE = re.compile(r"\bcoin is (?:still |now )?(heads|tails) up\b", re.IGNORECASE)


def extract(text: str) -> str | None:
    """"yes" or "no": after "the answer is", else a leading Yes/No, else the only one of the two
    words used, else the side the reply last says the coin shows ("heads up": yes); None when
    absent or ambiguous."""
    text = strip_markdown(text).strip()
    cued = after_answer_cue(text)
    if cued is not None and (m := re.match(r"\W*(yes|no)\b", cued, re.IGNORECASE)):
        return m.group(1).lower()
    if m := re.match(r"\W*(yes|no)\b", text, re.IGNORECASE):
        return m.group(1).lower()
    words = {w.lower() for w in _YES_NO.findall(text)}
    if words:
        return words.pop() if len(words) == 1 else None
    sides = _SIDE.findall(text)
    return ("yes" if sides[-1].lower() == "heads" else "no") if sides else None


def _key(answer: str) -> str:
    return answer.lower()


TASK = Task(
    name="coin_flip",
    description="coin flip, 2 people, 'Flip means reverse.' (RaR format)",
    system1=Stage("answer", prompts.RAR_DIRECT, source=prompts.RAR_SOURCE),
    extract=extract,
    score=lambda answer, ex: exact_score(answer, ex, _key),
    from_rows=from_rows,
    key=_key,
    target=lambda answer: answer.capitalize(),  # "Yes" / "No"
    synthesize=synthesize,
)
