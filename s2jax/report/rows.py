"""Per-item evaluation rows: the one input every figure of the report is computed from.

A run keeps one JSONL file per system, `eval/<system>.jsonl` (`system1`, `system2`,
`distilled`), one object per evaluated example, written by
`s2jax.distill.evaluate.score_examples`:

    id        str        the example's id, unique within a file and split; systems are paired
                         on it (the same id is the same input for every system of an arm)
    item      str        the input that an example's templates share (a country asked under
                         four templates is one item): the bootstrap resamples items, keeping
                         their templates together. Default: the id
    template  str|null   the prompt template it was asked with; null when the task has none
    split     str        "test", "validation", ...; default "test" (rows written before the
                         field existed were all test rows)
    answer    str|null   the prediction: the final answer read from the reply; null abstains
    score     number     credit of the answer against the gold, in [0, 1] (0/1 for most tasks)
    tokens    int        generated tokens of the example, every stage and sample counted
    replies   [str]      the final stage's reply texts, one per sample (why an answer was wrong)

`id`, `answer`, `score`, `tokens` and `replies` are required; a row without one, or with a value
of another type, is a one-line error naming the file and line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_objects
from s2jax.core.shards import index_path, is_complete

DEFAULT_SPLIT = "test"


@dataclasses.dataclass(frozen=True)
class ItemRow:
    """One evaluated example of one system (see the module docstring for the fields)."""

    id: str
    score: float
    tokens: int
    answer: str | None = None
    replies: tuple[str, ...] = ()
    item: str = ""  # "" -> the id
    template: str | None = None
    split: str = DEFAULT_SPLIT

    def __post_init__(self):
        if not self.item:
            object.__setattr__(self, "item", self.id)

    @property
    def binary(self) -> bool:
        return self.score in (0.0, 1.0)


def _is_str(v) -> bool:
    return isinstance(v, str)


def _opt_str(v) -> bool:
    return v is None or isinstance(v, str)


def _is_score(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1


def _is_tokens(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_replies(v) -> bool:
    return isinstance(v, list) and all(isinstance(t, str) for t in v)


# field -> (required, check, what is expected)
FIELDS = {
    "id": (True, lambda v: _is_str(v) and bool(v), "a non-empty string"),
    "answer": (True, _opt_str, "a string or null"),
    "score": (True, _is_score, "a number in [0, 1]"),
    "tokens": (True, _is_tokens, "an integer >= 0"),
    "replies": (True, _is_replies, "a list of strings"),
    "item": (False, lambda v: _is_str(v) and bool(v), "a non-empty string"),
    "template": (False, _opt_str, "a string or null"),
    "split": (False, lambda v: v is None or (_is_str(v) and bool(v)),
              "a non-empty string or null"),
}


def parse_row(row: Mapping, where: str) -> ItemRow:
    """An `ItemRow` of a JSON object; S2JaxError naming `where` and the field on a bad one."""
    for name, (required, ok, expected) in FIELDS.items():
        if name not in row:
            if required:
                raise S2JaxError(f"{where}: no field {name!r} (expected {expected}; an "
                                 "evaluation row holds id, answer, score, tokens, replies)")
            continue
        if not ok(row[name]):
            raise S2JaxError(f"{where}: field {name!r} is {row[name]!r:.60}, expected {expected}")
    return ItemRow(id=row["id"], score=float(row["score"]), tokens=row["tokens"],
                   answer=row["answer"], replies=tuple(row["replies"]),
                   item=row.get("item") or row["id"], template=row.get("template"),
                   split=row.get("split") or DEFAULT_SPLIT)


def check_unique(rows: Sequence[ItemRow], where: str) -> None:
    """Ids are unique within a split of one file."""
    seen = set()
    for r in rows:
        if (r.split, r.id) in seen:
            raise S2JaxError(f"{where}: id {r.id!r} appears twice in split {r.split!r} "
                             "(expected one row per example)")
        seen.add((r.split, r.id))


def read_rows(path: str | os.PathLike) -> list[ItemRow]:
    """The rows of one system's eval file; a file still being written is refused.

    Raises S2JaxError when the file is missing, unreadable, has a bad row, repeats an id, or
    has a shard index without its completion line (the evaluation did not finish).
    """
    path = Path(path)
    if index_path(path).exists() and not is_complete(path):
        raise S2JaxError(f"{path}: the evaluation did not finish (its .shards index has no "
                         "completion line); resume the run, or leave this run out")
    rows = [parse_row(obj, where) for where, obj in read_objects(path, "evaluation rows")]
    if not rows:
        raise S2JaxError(f"{path}: no rows (expected one evaluation row per example)")
    check_unique(rows, str(path))
    return rows


def by_split(rows: Iterable[ItemRow]) -> dict[str, list[ItemRow]]:
    """Rows grouped by split, each group in id order (so results do not depend on file order)."""
    out: dict[str, list[ItemRow]] = {}
    for r in rows:
        out.setdefault(r.split, []).append(r)
    return {k: sorted(v, key=lambda r: r.id) for k, v in sorted(out.items())}


def check_same_items(systems: Mapping[str, Sequence[ItemRow]], where: str) -> None:
    """Every system of one split holds the same ids (the paired tests need the same items)."""
    names = list(systems)
    first = {r.id for r in systems[names[0]]}
    for name in names[1:]:
        ids = {r.id for r in systems[name]}
        if ids != first:
            only_a, only_b = sorted(first - ids), sorted(ids - first)
            example = (f"{len(only_a)} only in {names[0]} (e.g. {only_a[0]!r})" if only_a
                       else f"{len(only_b)} only in {name} (e.g. {only_b[0]!r})")
            raise S2JaxError(f"{where}: {names[0]} and {name} were evaluated on different items "
                             f"({example}); the paired tests need the same items")
        items = {r.id: r.item for r in systems[names[0]]}
        moved = next((r.id for r in systems[name] if items[r.id] != r.item), None)
        if moved is not None:
            raise S2JaxError(f"{where}: id {moved!r} belongs to item {items[moved]!r} in "
                             f"{names[0]} but not in {name} (expected the same items)")


def check_subset(systems: Mapping[str, Sequence[ItemRow]], part: str, where: str) -> None:
    """`part`'s ids are some of the other systems' ids (it was evaluated on a subset)."""
    whole = next(rs for s, rs in systems.items() if s != part)
    extra = sorted({r.id for r in systems[part]} - {r.id for r in whole})
    if extra:
        raise S2JaxError(f"{where}: {part} and the other systems were evaluated on different "
                         f"items: {len(extra)} only in {part} (e.g. {extra[0]!r}); expected "
                         "the same items or a subset of them")
