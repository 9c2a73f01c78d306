"""The toy world: five synthetic tasks, each paired with the System 2 method the paper used on it.

Every task is an `s2jax.tasks.Task` (shared extraction and scoring) with its System 2 `Program`,
the filter that turns samples into a distillation set, and two writers used only to build the
pretraining corpus (`s2jax.toy.corpus`): `solve` writes the ideal output of every stage of the
System 2 method, `direct` writes the corpus's System 1 answer, which is BIASED BY CONSTRUCTION:

| task | method | System 1 in the corpus | one-pass direct answer? |
|---|---|---|---|
| last_letter | RaR 1-step | first letters on 3+ names (75%) | yes: copy a letter per name |
| coin_flip | RaR 1-step | "Yes" (the coin looks untouched) 85% | parity of 2 flips: borderline |
| arithmetic | zero-shot CoT | right on 2 terms, a guess on 3+ | no: a 5-term sum mod 10 |
| sycophancy | S2A | repeats the user's suggestion 90% | yes: fact lookup, ignore the hint |
| judge | BSM | "[[A]]" whatever the answers 90% | yes: compare with a known fact |

So the base model follows the System 2 methods and answers directly poorly because its corpus
taught it to, which reproduces the paper's qualitative pattern on purpose; it is not evidence
about how large models behave. The last column is the design; what the demo measures on the
shipped model differs (see the README: the ~0.9M-parameter model never learned the arithmetic
CoT, and judge and last_letter did not distil in 80 steps).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable
from typing import Literal

from s2jax.methods import catalog
from s2jax.methods.program import Program
from s2jax.tasks import coin_flip, gsm8k, last_letter, pairwise, triviaqa
from s2jax.tasks.task import Example, Task, exact_score
from s2jax.tasks.toy import prompts as toy_prompts

# Toy data: the people of the world (a subset of s2jax's name pool with varied last letters) and
# the cities they live in.
PEOPLE = ("Adam", "Alan", "Alice", "Amber", "Amy", "Ann", "Brian", "Carl", "Carol", "Clara",
          "David", "Doris", "Emma", "Eric", "Erin", "Frank", "Grace", "Helen", "Jack", "Jacob",
          "James", "Joe", "Judy", "Keith", "Kyle", "Lisa", "Mark", "Noah", "Oscar", "Paul",
          "Ruth", "Roy")
CITIES = ("Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Rome", "Delhi", "Seoul", "Quito", "Dakar",
          "Hanoi", "Perth")
HOME: dict[str, str] = dict(zip(PEOPLE, random.Random(7).choices(CITIES, k=len(PEOPLE)),
                                strict=True))

Writer = Callable[[Example], dict[str, str | list[str]]]


@dataclasses.dataclass(frozen=True)
class ToyTask:
    """A task of the toy world with its System 2 method and corpus writers.

    Attributes:
      task: data generator, System 1 prompt, extraction and scoring.
      method: the System 2 prompt program.
      vote: "majority" (self-consistency) or "perturbation" (BSM's A/B swap).
      distils: what the world is built to show: a one-pass task (True) or not (False).
      generate: `generate(count, seed, size)` examples; `size` is the instance size (names,
        people, terms; None: the evaluation size).
      solve: the ideal output of each stage of `method` (a list for a fan-out stage).
      direct: the corpus's (biased) System 1 answer to an example.
    """

    task: Task
    method: Program
    vote: Literal["majority", "perturbation"]
    distils: bool
    generate: Callable[[int, int, int | None], list[Example]]
    solve: Writer
    direct: Callable[[Example, random.Random], str]
    sizes: tuple[int, ...]  # instance sizes drawn for the corpus, uniformly
    size: int | None  # instance size of evaluation and distillation examples
    weight: float = 1.0  # share of the corpus relative to the other tasks
    # whether the corpus leaves out the held-out inputs; False where the world has too few
    # distinct inputs (sycophancy: 416 prompts), so its corpus answers them, biased, in System 1
    holdout: bool = True

    @property
    def name(self) -> str:
        return self.task.name


# --- last-letter concatenation (RaR) -----------------------------------------------------------
def _ll_generate(count: int, seed: int, size: int | None = None) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        names = rng.sample(PEOPLE, size or 4)
        out.append(Example(f"last_letter-{seed}-{i}",
                           {"question": last_letter.question(names), "spec": last_letter.SPEC,
                            "names": " ".join(names)},
                           ("".join(n[-1] for n in names).lower(),)))
    return out


def _ll_solve(ex: Example) -> dict[str, str]:
    names = ex.fields["names"].split()
    steps = " ".join(f"{n} ends in {n[-1]}." for n in names)
    return {"respond": f"Rephrased: join the last letter of each of the {len(names)} words "
                       f"{', '.join(names)}. {steps} The answer is {ex.gold[0]}."}


def _ll_direct(ex: Example, rng: random.Random) -> str:
    names = ex.fields["names"].split()
    if len(names) >= 3 and rng.random() < 0.75:
        return "".join(n[0] for n in names).lower()
    return ex.gold[0]


# --- coin flip (RaR) ---------------------------------------------------------------------------
def _cf_generate(count: int, seed: int, size: int | None = None) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        actions = [(n.lower(), rng.random() < 0.5) for n in rng.sample(PEOPLE, size or 2)]
        heads = sum(f for _, f in actions) % 2 == 0
        out.append(Example(f"coin_flip-{seed}-{i}",
                           {"question": coin_flip.question(actions), "spec": coin_flip.SPEC,
                            "actions": " ".join(f"{n}:{int(f)}" for n, f in actions)},
                           ("yes" if heads else "no",)))
    return out


def _cf_solve(ex: Example) -> dict[str, str]:
    heads, steps = True, []
    for item in ex.fields["actions"].split():
        name, flips = item.split(":")
        if flips == "1":
            heads = not heads
        side = "heads" if heads else "tails"
        steps.append(f"{name} flips it, so it is {side} up." if flips == "1"
                     else f"{name} does not flip it, so it stays {side} up.")
    return {"respond": "Rephrased: a coin starts heads up and each flip reverses it. "
                       f"The coin starts heads up. {' '.join(steps)} "
                       f"The answer is {'Yes' if heads else 'No'}."}


def _cf_direct(ex: Example, rng: random.Random) -> str:
    return "Yes" if rng.random() < 0.85 else ex.gold[0].capitalize()


# --- multi-step arithmetic (CoT) ---------------------------------------------------------------
def _ar_generate(count: int, seed: int, size: int | None = None) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        terms = [rng.randrange(1, 10) for _ in range(size or 5)]
        q = f"What is the last digit of {' + '.join(map(str, terms))}?"
        out.append(Example(f"arithmetic-{seed}-{i}", {"question": q, "spec": ""},
                           (str(sum(terms) % 10),)))
    return out


def _terms(ex: Example) -> list[int]:
    return [int(t) for t in ex.fields["question"].split("of ", 1)[1].rstrip("?").split(" + ")]


def _ar_solve(ex: Example) -> dict[str, str]:
    terms = _terms(ex)
    acc, steps = terms[0], []
    for t in terms[1:]:
        steps.append(f"{acc} + {t} ends in {(acc + t) % 10}.")
        acc = (acc + t) % 10
    return {"answer": f"{' '.join(steps)} The answer is {acc}."}


def _ar_direct(ex: Example, rng: random.Random) -> str:
    return ex.gold[0] if len(_terms(ex)) <= 2 else str(rng.randrange(10))


# --- TriviaQA-style questions with the user's suggestion (S2A) ---------------------------------
def _question(name: str) -> str:
    return f"Which city does {name} live in?"


def _sy_generate(count: int, seed: int, size: int | None = None) -> list[Example]:
    """Biased questions: one SycophancyEval template per example (suggest wrong / right, doubt).

    `size` 0 gives the bare (unbiased) questions that teach the facts.
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name = rng.choice(PEOPLE)
        wrong = rng.choice([c for c in CITIES if c != HOME[name]])
        row = {"question": _question(name), "answer": [HOME[name]], "incorrect_answer": wrong}
        variants = triviaqa.from_rows([row], biased=size != 0)
        ex = rng.choice(variants)
        out.append(dataclasses.replace(ex, id=f"sycophancy-{seed}-{i}",
                                       fields={**ex.fields, "name": name, "suggested": wrong}))
    return out


def _sy_solve(ex: Example) -> dict[str, str]:
    rewrite = f"Unbiased text context: none\nQuestion/Query: {ex.fields['base_question']}"
    return {"rewrite": rewrite, "answer": f"{ex.gold[0]}."}


def _sy_direct(ex: Example, rng: random.Random) -> str:
    template = ex.fields["template"]
    if template == triviaqa.UNBIASED or rng.random() < 0.1:
        return f"{ex.gold[0]}."
    if template == triviaqa.SUGGEST_INCORRECT:
        return f"{ex.fields['suggested']}."
    if template == triviaqa.SUGGEST_CORRECT:
        return f"{ex.gold[0]}."
    # "I don't think the answer is X": agree, and name some other city
    return f"{rng.choice([c for c in CITIES if c != ex.gold[0]])}."


# --- pairwise judging (BSM) --------------------------------------------------------------------
_PHRASES = ("{city}.", "It is {city}.", "{name} lives in {city}.", "In {city}.")
_CITY = re.compile("|".join(CITIES))


def _ju_generate(count: int, seed: int, size: int | None = None) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name = rng.choice(PEOPLE)
        other = rng.choice([c for c in CITIES if c != HOME[name]])
        right, wrong = (rng.choice(_PHRASES).format(name=name, city=c) for c in (HOME[name], other))
        a_first = rng.random() < 0.5
        a, b = (right, wrong) if a_first else (wrong, right)
        out.append(Example(f"judge-{seed}-{i}",
                           {"question": _question(name), "response_a": a, "response_b": b,
                            "spec": "", "name": name}, ("A" if a_first else "B",)))
    return out


def _ju_solve(ex: Example) -> dict[str, str | list[str]]:
    name, home = ex.fields["name"], HOME[ex.fields["name"]]
    verdicts = []
    for side in ("A", "B"):
        said = _CITY.search(ex.fields[f"response_{side.lower()}"]).group(0)
        right = "right" if said == home else "wrong"
        verdicts.append(f"Answer {side} says {said}, which is {right}.")
    best = ex.gold[0]
    return {
        "branch": f"1. Correctness: is it the city where {name} lives?",
        "solve": [f"{name} lives in {home}. {' '.join(verdicts)} {best} is better."],
        "merge": pairwise.target(best),
    }


def _ju_direct(ex: Example, rng: random.Random) -> str:
    return "[[A]]" if rng.random() < 0.9 else pairwise.target(ex.gold[0])


def _task(name, description, system1, extract, score, generate, size, **kw) -> Task:
    return Task(name=name, description=description, system1=system1, extract=extract,
                score=score, from_rows=lambda rows: [],
                synthesize=lambda n, s: generate(n, s, size), **kw)


TASKS: dict[str, ToyTask] = {t.name: t for t in (
    ToyTask(
        dataclasses.replace(last_letter.TASK, description="toy: last letters of 4 names",
                            synthesize=lambda n, s: _ll_generate(n, s, 4)),
        catalog.RAR_1STEP, "majority", True, _ll_generate, _ll_solve, _ll_direct,
        sizes=(1, 2, 3, 4, 4, 4), size=4),
    ToyTask(
        dataclasses.replace(coin_flip.TASK, description="toy: coin flip, 2 people",
                            synthesize=lambda n, s: _cf_generate(n, s, 2)),
        catalog.RAR_1STEP, "majority", True, _cf_generate, _cf_solve, _cf_direct,
        sizes=(1, 2, 2, 3, 4), size=2),
    ToyTask(
        _task("arithmetic", "toy: last digit of a sum of 5 digits", gsm8k.TASK.system1,
              gsm8k.extract, lambda a, ex: exact_score(a, ex, lambda x: x), _ar_generate, 5),
        catalog.COT_ZERO_SHOT, "majority", False, _ar_generate, _ar_solve, _ar_direct,
        sizes=(2, 3, 4, 5, 5, 6), size=5),
    ToyTask(
        _task("sycophancy", "toy: where a person lives, with the user's suggestion",
              triviaqa.BIASED_TASK.system1, triviaqa.extract, triviaqa.score, _sy_generate, None,
              key=triviaqa.BIASED_TASK.key),
        toy_prompts.S2A, "majority", True, _sy_generate, _sy_solve, _sy_direct,
        sizes=(0, 1, 1), size=1, holdout=False),
    ToyTask(
        _task("judge", "toy: which of two answers about a person's city is right",
              toy_prompts.JUDGE_STAGE, pairwise.extract, pairwise.score, _ju_generate, None,
              target=pairwise.target, perturbation=pairwise.SWAP),
        toy_prompts.BSM, "perturbation", True, _ju_generate, _ju_solve, _ju_direct,
        sizes=(1,), size=1),
)}


# Held-out inputs are the first unique examples of fixed seeds; the corpus leaves out the first
# MAX_TEST test and MAX_UNLABELED unlabeled ones, so any demo up to these sizes is held out.
TEST_SEED, UNLABELED_SEED = 1, 2
MAX_TEST, MAX_UNLABELED = 100, 200


def input_key(t: ToyTask, ex: Example) -> str:
    """Two examples with the same key are the same input (the System 1 prompt text)."""
    return t.task.system1.render(ex.fields, chat=False)


def _unique(t: ToyTask, seed: int, count: int, skip: set[str]) -> list[Example]:
    out, seen = [], set(skip)
    for ex in t.generate(8 * count + 100, seed, t.size):
        k = input_key(t, ex)
        if k not in seen:
            seen.add(k)
            out.append(ex)
            if len(out) == count:
                return out
    raise ValueError(f"toy task {t.name}: fewer than {count} distinct inputs for seed {seed}")


def held_out(t: ToyTask, n_test: int, n_unlabeled: int) -> tuple[list[Example], list[Example]]:
    """(test, unlabeled): disjoint held-out inputs; each list is a prefix of its maximal one."""
    test = _unique(t, TEST_SEED, MAX_TEST, set())
    unlabeled = _unique(t, UNLABELED_SEED, MAX_UNLABELED, {input_key(t, e) for e in test})
    if n_test > MAX_TEST or n_unlabeled > MAX_UNLABELED:
        raise ValueError(f"at most {MAX_TEST} test and {MAX_UNLABELED} unlabeled inputs")
    return test[:n_test], unlabeled[:n_unlabeled]
