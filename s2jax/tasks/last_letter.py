"""Last-letter concatenation of 4 names, in the RaR authors' format (the paper's RaR task).

Question: 'Take the last letters of the words in "Annette Erin Marisol Esperanza" and concatenate
them.' Answer: "enla". Files in the authors' format (data/last_letter_concatenation4_*.json of
uclaml/Rephrase-and-Respond: a JSON list of {"question", "answer", ...}) load with `from_rows`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping

from s2jax.core.errors import S2JaxError
from s2jax.methods import prompts
from s2jax.methods.program import Stage
from s2jax.tasks.answers import answer_cues, strip_markdown
from s2jax.tasks.names import first_names
from s2jax.tasks.splits import parse_split, split_pool
from s2jax.tasks.task import Example, Task, exact_score

NAMES_PER_QUESTION = 4  # the paper's variant ("last_letter_concatenation4")
SPEC = ""  # the RaR authors' config.json has no answer-format line for this task


def question(names: Iterable[str]) -> str:
    """The question for these names, worded as in the RaR authors' data."""
    return f'Take the last letters of the words in "{" ".join(names)}" and concatenate them.'


def _questions(pool, count: int, rng: random.Random, prefix: str, names_per_question: int
               ) -> list[Example]:
    out = []
    for i in range(count):
        names = rng.sample(pool, names_per_question)
        out.append(Example(
            f"{prefix}-{i}",
            {"question": question(names), "spec": SPEC},
            ("".join(n[-1] for n in names).lower(),),
        ))
    return out


def synthesize(count: int, seed: int = 0, names_per_question: int = NAMES_PER_QUESTION
               ) -> list[Example]:
    """`count` questions, each on distinct names drawn from the name pool with `seed`."""
    return _questions(first_names(), count, random.Random(seed), f"last_letter-{seed}",
                      names_per_question)


SPLIT_SIZE = 1000  # questions per split; a config's `limit` takes the first ones


def split_examples(spec: str | None, seed: int) -> list[Example]:
    """`SPLIT_SIZE` questions of one split: the name pool is split by `seed`
    (`s2jax.tasks.splits`), so a test question uses only names no unlabeled question uses.

    The pool is the real US first names s2jax ships; names-dataset's larger pool is not used
    because it is a pickle, which s2jax never loads.
    """
    split, variants = parse_split(spec)
    if variants:
        raise S2JaxError(f"split {spec!r}: last_letter has no variants to select")
    pool = split_pool(first_names(), split, seed)
    rng = random.Random(f"last_letter-{split}-{seed}")
    return _questions(pool, SPLIT_SIZE, rng, f"last_letter-{split}-{seed}", NAMES_PER_QUESTION)


def from_rows(rows: Iterable[Mapping]) -> list[Example]:
    """Examples from rows with "question" and "answer" (the RaR authors' files)."""
    out = []
    for i, row in enumerate(rows):
        if "question" not in row:
            raise S2JaxError(f"last_letter row {i}: no 'question' field (has {sorted(row)})")
        gold = (str(row["answer"]).lower(),) if row.get("answer") else ()
        out.append(Example(str(row.get("id", f"last_letter-{i}")),
                           {"question": str(row["question"]), "spec": SPEC}, gold))
    return out


_WORD = r"[\"'“‘]?([A-Za-z]+)[\"'”’]?"
_CUED = re.compile(rf"^{_WORD}(?:[\s.,;:!)]|$)")
_QUOTED = re.compile(r"[\"“]([A-Za-z]+)[\"”]")


# Words that start a sentence after "The answer is" rather than being the answer.
_NOT_AN_ANSWER = {"the", "a", "an", "to", "that", "this", "not", "in", "it", "we"}
_QUOTED_WORDS = re.compile(r"^[\"“]\w+\s+\w+[^\"”]*[\"”]")
_SPELLED = re.compile(r"^[\"'“‘]?((?:[A-Za-z][.,\-\s]\s*){1,7}[A-Za-z])\.?[\"'”’]?(?:[\s.,;:!)]|$)")


def extract(text: str) -> str | None:
    """The concatenated letters: after "the answer is" (a word, or letters spelled out as
    "E.V.T."), else a one-word reply, else the last quoted single word; lower case. None when
    there is none."""
    text = strip_markdown(text).strip()
    for cued in reversed(answer_cues(text)):  # the last cue that is followed by an answer
        if m := _SPELLED.match(cued):
            return re.sub(r"[^A-Za-z]", "", m.group(1)).lower()
        if _QUOTED_WORDS.match(cued):  # '"Nathan Raymond Juan Matthew"': the names, not letters
            continue
        if (m := _CUED.match(cued)) and m.group(1).lower() not in _NOT_AN_ANSWER:
            return m.group(1).lower()
    if re.fullmatch(rf"{_WORD}\.?", text):
        return re.sub(r"[^A-Za-z]", "", text).lower()
    quoted = _QUOTED.findall(text)
    return quoted[-1].lower() if quoted else None


def _key(answer: str) -> str:
    return answer.lower()


TASK = Task(
    name="last_letter",
    description="last-letter concatenation of 4 names (RaR format)",
    system1=Stage("answer", prompts.RAR_DIRECT, source=prompts.RAR_SOURCE),
    extract=extract,
    score=lambda answer, ex: exact_score(answer, ex, _key),
    from_rows=from_rows,
    key=_key,
    synthesize=synthesize,
    splits=split_examples,
)
