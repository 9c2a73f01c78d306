"""The multiplication task: traces checked by recomputing every partial product and sum,
seeded unlimited generation, disjoint splits, answer reading."""

import random
import re

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.distill.trace import trace_task
from s2jax.tasks import TASKS
from s2jax.tasks import multiplication as mult


def _check_trace(text: str, answer: str, a: int, b: int, k: int) -> None:
    """Recomputes the trace from its own terms: p_j = a * (digit j of b) * 10^j, each running
    sum the sum of the partial products so far, widths k + 1 + j, and the answer the sum of
    all partial products, a * b."""
    terms = re.fullmatch(r"([\d ]+?)((?: \+ [\d ]+? \( [\d ]+? \))*)((?: \+ [\d ]+)?)", text)
    assert terms, text
    parts = [terms.group(1)] + re.findall(r" \+ ([\d ]+?) \( ", terms.group(2))
    parts += re.findall(r" \+ ([\d ]+)", terms.group(3))
    sums = re.findall(r"\( ([\d ]+?) \)", terms.group(2))
    assert len(parts) == k and len(sums) == max(k - 2, 0)
    b_digits = [int(c) for c in str(b)[::-1]]
    running = 0
    for j, part in enumerate(parts):
        assert len(part.split()) == k + 1 + j
        assert mult.read_digits(part) == a * b_digits[j] * 10 ** j
        running += mult.read_digits(part)
        if 0 < j < k - 1:
            assert len(sums[j - 1].split()) == k + 1 + j
            assert mult.read_digits(sums[j - 1]) == running
    assert len(answer.split()) == 2 * k
    assert running == a * b == mult.read_digits(answer)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 9, 12])
def test_traces_recompute_to_the_product(k):
    rng = random.Random(k)
    cases = [(10 ** (k - 1), 10 ** (k - 1)), (10 ** k - 1, 10 ** k - 1)]
    cases += [(rng.randrange(10 ** (k - 1), 10 ** k), rng.randrange(10 ** (k - 1), 10 ** k))
              for _ in range(200)]
    for a, b in cases:
        _check_trace(mult.trace(a, b, k), mult.answer(a, b, k), a, b, k)


def test_the_docstring_examples_and_deng_et_al_s_first_4x4_test_line():
    assert mult.question(64, 35, 2) == "4 6 * 5 3"
    assert mult.trace(64, 35, 2) == "0 2 3 + 0 2 9 1"
    assert mult.answer(64, 35, 2) == "0 4 2 2"
    # data/4_by_4_mult/test_bigbench.txt of da03/Internalize_CoT_Step_by_Step, line 1
    line = ("9 1 7 3 * 9 4 3 3||1 7 4 3 3 + 0 6 7 8 4 1 ( 1 3 2 2 8 1 ) + 0 0 7 5 1 1 1 "
            "( 1 3 9 7 9 2 1 ) + 0 0 0 7 5 1 1 1 #### 1 3 9 4 5 4 2 1")
    question, rest = line.split("||")
    trace, answer = rest.split(" #### ")
    assert question == mult.question(3719, 3349, 4)
    assert trace == mult.trace(3719, 3349, 4) and answer == mult.answer(3719, 3349, 4)


def test_generation_is_seeded_unlimited_and_splits_are_disjoint():
    a = mult.synthesize(3000, seed=1, k=3)
    assert a == mult.synthesize(3000, seed=1, k=3) and a != mult.synthesize(3000, seed=2, k=3)
    assert len(mult.synthesize(20000, seed=3, k=2)) == 20000  # repeats allowed in train
    test = mult.synthesize(300, seed=0, k=3, split="test")
    train_pairs = {mult.operands(e)[:2] for e in a}
    test_pairs = [mult.operands(e)[:2] for e in test]
    assert len(set(test_pairs)) == 300 and not train_pairs & set(test_pairs)
    assert all(mult.split_of(x, y) == "test" for x, y in test_pairs)
    for ex in a[:50]:
        x, y, k = mult.operands(ex)
        assert 100 <= x < 1000 and 100 <= y < 1000 and k == 3
        assert ex.gold == (mult.answer(x, y, 3),)
    with pytest.raises(S2JaxError, match="distinct test pairs"):
        mult.synthesize(50, seed=0, k=1, split="test")  # 81 pairs, ~8 of them test pairs
    with pytest.raises(S2JaxError, match="expected 1..20"):
        mult.synthesize(1, k=0)


def test_answers_are_read_after_the_mark_and_compared_as_numbers():
    task = TASKS["multiplication"]
    ex = mult.example(64, 35, 2, "x")
    assert task.score(task.extract("0 4 2 2"), ex) == 1.0
    assert task.score("0 4 2 2 0", ex) == 1.0  # a longer zero-padded writing of 2240
    read = trace_task(task).extract
    assert read("0 2 3 + 0 2 9 1\n#### 0 4 2 2") == "0 4 2 2"
    assert task.score(read("#### 0 4 2 3"), ex) == 0.0 and read("no digits") is None
    assert mult.from_rows([{"a": 64, "b": 35, "k": 2}])[0].gold == ("0 4 2 2",)
    with pytest.raises(S2JaxError, match="row 0"):
        mult.from_rows([{"a": "x"}])
