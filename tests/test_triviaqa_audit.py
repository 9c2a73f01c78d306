"""The TriviaQA extractor on real replies to questions other than capitals (dates, people,
numbers, units, places): tests/fixtures/triviaqa_audit holds the question set, both real
models' greedy replies and the answer a person read in each (scripts/triviaqa_audit.py)."""

import json
from collections import Counter
from pathlib import Path

import pytest

from s2jax.tasks import short_answer, triviaqa

AUDIT = Path(__file__).parent / "fixtures" / "triviaqa_audit"
MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_question_set_is_not_capitals_and_every_reply_is_labelled():
    questions = _jsonl(AUDIT / "questions.jsonl")
    replies = {m: _jsonl(AUDIT / f"{m}.jsonl") for m in MODELS}
    kinds = Counter(q["kind"] for q in questions)
    assert len(kinds) >= 5 and min(kinds.values()) >= 15, kinds
    assert not any("capital" in q["question"].lower() for q in questions)
    ids = {q["id"] for q in questions}
    person = json.loads((AUDIT / "overrides.json").read_text())  # what a person read, per reply
    for model, rows in replies.items():
        assert len(rows) >= len(questions), model  # at least every question once
        assert all(r["model"] == model and r["human"] == person[f"{model}|{r['id']}"]
                   for r in rows)
        assert {r["id"].rsplit("-", 1)[0] for r in rows} <= ids
        assert len({r["id"] for r in rows}) == len(rows)


def _agrees(got, human):
    """The extractor read what the person read: one holds the other as whole words."""
    return short_answer.matches(got, human) or short_answer.matches(human, got)


def _audit(rows):
    readable = [r for r in rows if r["human"] is not None]
    got = [triviaqa.extract(r["text"]) for r in readable]
    missed = [r["text"] for r, g in zip(readable, got, strict=True) if g is None]
    misread = [(r["human"], g) for r, g in zip(readable, got, strict=True)
               if g is not None and not _agrees(g, r["human"])]
    return readable, missed, misread


@pytest.mark.parametrize("model", MODELS)
def test_the_extractor_reads_what_a_person_reads(model):
    rows = _jsonl(AUDIT / f"{model}.jsonl")
    readable, missed, misread = _audit(rows)
    assert len(readable) >= 0.5 * len(rows)
    assert len(missed) <= 0.05 * len(readable), missed
    assert len(misread) <= 0.10 * len(readable), misread  # reported: scripts/triviaqa_audit.py


@pytest.mark.parametrize("text, expected", [
    ("World War II ended in 1945.", "World War II ended in 1945"),
    ("The Titanic sank on April 15, 1912, after hitting an iceberg during its maiden voyage "
     "from Southampton to New York City.", "The Titanic sank on April 15, 1912"),
    ("Yes, you're right! The answer is **1945**.", "1945"),
    ("I'm not sure. The answer is not 1944, it is 1945.", "1945"),
    ("**Leonardo da Vinci** painted the Mona Lisa.", "Leonardo da Vinci"),
    ("The unit of electrical resistance is the ohm, which is named after Georg Ohm, a German "
     "physicist who studied electric circuits.", "The unit of electrical resistance is the ohm"),
    ("Absolutely! A spider has eight legs.", "A spider has eight legs"),
    ("A leap year is divisible by 4. Therefore, a leap year has 366 days.",
     "a leap year has 366 days"),
    ("Independence Day, celebrated on July 4, is a federal holiday.",
     "Independence Day, celebrated on July 4"),
    ("The Taj Mahal is located in India, specifically in the city of Agra.",
     "The Taj Mahal is located in India, specifically in the city of Agra"),
    ("Electrical resistance is measured in ohms (Ω).", "Electrical resistance is measured in ohms"),
    ("There are many theories about management and it is not easy to say which one this is",
     None),
    ("As an AI language model, I don't have opinions. However, humans first landed on the Moon "
     "in 1969.", "humans first landed on the Moon in 1969"),
    ("I'm sorry, but I can't assist with that.", None),
    ('The answer to the question "How many continents are there? " is 7.', "7"),
    ("", None),
])
def test_reads_a_short_answer(text, expected):
    assert short_answer.read(text) == expected


@pytest.mark.parametrize("answer, gold, expected", [
    ("A spider has eight legs", "8", True),
    ("two hundred and six bones", "206", True),
    ("about 300,000 km/s", "300000", True),
    ("Brasília", "Brasilia", True),
    ("1.6 kilometres", "1.6", True),
    ("16 kilometres", "1.6", False),
    ("The Peter Principle", "Peter principle", True),
    ("eighteen", "8", False),
    ("1945", "1944", False),
])
def test_matches_ignores_form_not_content(answer, gold, expected):
    assert short_answer.matches(answer, gold) is expected
    assert triviaqa.score(answer, triviaqa.Example("x", {}, (gold,))) == float(expected)
