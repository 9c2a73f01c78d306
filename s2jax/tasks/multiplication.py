"""k x k digit multiplication with a partial-product trace, in the format of Deng et al.'s
implicit chain-of-thought data (arXiv 2311.01460; stepwise internalization, arXiv 2405.14838).

Numbers are written least significant digit first, one digit per space-separated word, so every
digit is a token of its own for most tokenizers and carries propagate left to right, the order
in which a decoder writes them. For a = a_(k-1)..a_0 and b = b_(k-1)..b_0:

    question  "a_0 .. a_(k-1) * b_0 .. b_(k-1)"
    trace     p_0 + p_1 ( s_1 ) + p_2 ( s_2 ) ... + p_(k-2) ( s_(k-2) ) + p_(k-1)
    answer    the product a * b = s_(k-1) in 2k digits

where p_j = a * b_j * 10^j and s_j = p_0 + ... + p_j, each written in k + 1 + j digits. E.g.
64 * 35 ("4 6 * 5 3"): trace "0 2 3 + 0 2 9 1", answer "0 4 2 2"; 3719 * 3349, their data's
first 4 x 4 test line: "9 1 7 3 * 9 4 3 3", trace "1 7 4 3 3 + 0 6 7 8 4 1 ( 1 3 2 2 8 1 ) +
0 0 7 5 1 1 1 ( 1 3 9 7 9 2 1 ) + 0 0 0 7 5 1 1 1", answer "1 3 9 4 5 4 2 1".

Operands are uniform over k-digit numbers (no leading zero), drawn from a seed without limit.
Train and test are disjoint by construction: a pair (a, b) belongs to the split its hash names
(`split_of`), about 10% of pairs to "test".
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping

from s2jax.core.errors import S2JaxError
from s2jax.methods.program import Stage
from s2jax.tasks.task import Example, Task, exact_score

SOURCE = "Deng et al. 2023 (implicit CoT), multiplication data format"
TEST_SHARE = 26  # of 256 hash buckets: ~10% of pairs are test pairs
MAX_K = 20


def digits(n: int, width: int) -> str:
    """`n` in `width` digits, least significant first, space-separated."""
    s = str(n).zfill(width)
    if len(s) > width:
        raise ValueError(f"{n} has more than {width} digits")
    return " ".join(reversed(s))


def read_digits(text: str) -> int:
    """The number that `digits` wrote."""
    return int(text.replace(" ", "")[::-1])


def question(a: int, b: int, k: int) -> str:
    return f"{digits(a, k)} * {digits(b, k)}"


def answer(a: int, b: int, k: int) -> str:
    return digits(a * b, 2 * k)


def trace(a: int, b: int, k: int) -> str:
    """The partial products and running sums (see the module docstring)."""
    b_digits = [int(c) for c in reversed(str(b).zfill(k))]
    parts, total = [], 0
    for j, bj in enumerate(b_digits):
        p = a * bj * 10 ** j
        total += p
        width = k + 1 + j
        part = digits(p, width) if not j else f"+ {digits(p, width)}"
        # the last running sum is the answer, which follows the trace
        parts.append(part if j in (0, k - 1) else f"{part} ( {digits(total, width)} )")
    return " ".join(parts)


def split_of(a: int, b: int) -> str:
    """"test" for ~10% of operand pairs (by a hash), else "train"."""
    bucket = hashlib.sha256(f"{a}*{b}".encode()).digest()[0]
    return "test" if bucket < TEST_SHARE else "train"


def _check(k: int, split: str) -> None:
    if not 1 <= k <= MAX_K:
        raise S2JaxError(f"multiplication k={k}: expected 1..{MAX_K} digits per operand")
    if split not in ("train", "test"):
        raise S2JaxError(f"multiplication split {split!r}: expected 'train' or 'test'")


def pairs(count: int, seed: int, k: int, split: str = "train", distinct: bool = False
          ) -> list[tuple[int, int]]:
    """`count` operand pairs of `split`, drawn with `seed` (with repeats unless `distinct`)."""
    _check(k, split)
    rng, lo, hi = random.Random(f"multiplication-{k}-{split}-{seed}"), 10 ** (k - 1), 10 ** k
    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 50 * count + 10_000:
            raise S2JaxError(f"multiplication k={k}: fewer than {count} distinct {split} pairs")
        ab = (rng.randrange(lo, hi), rng.randrange(lo, hi))
        if split_of(*ab) != split or (distinct and ab in seen):
            continue
        seen.add(ab)
        out.append(ab)
    return out


def example(a: int, b: int, k: int, id: str) -> Example:
    """One question with its gold answer and the fields a trace target needs."""
    return Example(id, {"question": question(a, b, k), "k": str(k)}, (answer(a, b, k),))


def synthesize(count: int, seed: int = 0, k: int = 4, split: str = "train") -> list[Example]:
    """`count` examples of `split` (test examples are distinct questions)."""
    return [example(a, b, k, f"multiplication{k}-{split}-{seed}-{i}")
            for i, (a, b) in enumerate(pairs(count, seed, k, split, distinct=split == "test"))]


def operands(ex: Example) -> tuple[int, int, int]:
    """(a, b, k) of an example."""
    left, right = ex.fields["question"].split(" * ")
    return read_digits(left), read_digits(right), int(ex.fields["k"])


_NUMBER = re.compile(r"\d(?: \d)*")


def extract(text: str) -> str | None:
    """The last run of space-separated digits in `text` (a reply's answer), or None."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def key(ans: str) -> str:
    """The number an answer writes (so '0 4 2 2' and '0 4 2 2 0' are one vote)."""
    return str(read_digits(ans)) if re.fullmatch(r"\d(?: \d)*", ans) else ans


def from_rows(rows: Iterable[Mapping]) -> list[Example]:
    """Examples from rows with integer "a", "b" and "k"."""
    out = []
    for i, row in enumerate(rows):
        try:
            a, b, k = int(row["a"]), int(row["b"]), int(row["k"])
        except (KeyError, TypeError, ValueError):
            raise S2JaxError(f"multiplication row {i}: expected integer fields a, b and k, "
                             f"got {sorted(row)}") from None
        out.append(example(a, b, k, str(row.get("id", f"multiplication-{i}"))))
    return out


def task(k: int = 4) -> Task:
    """The k x k task (System 1 prompt: the question alone)."""
    _check(k, "train")
    return Task(
        name="multiplication" if k == 4 else f"multiplication{k}",
        description=f"{k} x {k} digit multiplication, digits least significant first",
        system1=Stage("answer", "{question}", source=SOURCE),
        extract=extract,
        score=lambda ans, ex: exact_score(ans, ex, key),
        from_rows=from_rows,
        key=key,
        synthesize=lambda count, seed: synthesize(count, seed, k),
    )


TASK = task(4)
