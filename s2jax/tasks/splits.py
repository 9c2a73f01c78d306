"""Deterministic, disjoint splits of a package-shipped pool of facts (countries, names).

A pool is shuffled with `seed` and cut into the named splits by fraction, so the same seed always
gives the same splits and no item is in two of them. Configs must read every split of one run
with the same seed: two seeds give two unrelated partitions, which may overlap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from s2jax.core.errors import S2JaxError

T = TypeVar("T")

# unlabeled: System 2 runs on it (labels never read); validation: recipe choices; test: reported.
SPLITS: dict[str, float] = {"unlabeled": 0.6, "validation": 0.1, "test": 0.3}
ALL = "all"  # the whole pool, shuffled (a cross-fitting pool: every item tested once)


def split_pool(items: Sequence[T], split: str, seed: int) -> list[T]:
    """The items of one split of `items`, shuffled by `seed`.

    Args:
      items: the whole pool, in a fixed order (e.g. sorted by a stable key).
      split: a key of `SPLITS`, or `ALL` for the whole pool.
      seed: the partition's seed; the same for every split of one run.

    Returns:
      The split's items, in shuffled order.
    """
    if split not in SPLITS and split != ALL:
        raise S2JaxError(f"split {split!r}: expected one of {', '.join([*SPLITS, ALL])}")
    order = list(items)
    random.Random(seed).shuffle(order)
    if split == ALL:
        return order
    start = 0.0
    for name, share in SPLITS.items():
        lo, hi = round(start * len(order)), round((start + share) * len(order))
        if name == split:
            return order[lo:hi]
        start += share
    raise AssertionError("unreachable")


def parse_split(spec: str | None, default: str = "unlabeled") -> tuple[str, tuple[str, ...]]:
    """`"test:bare,doubt_correct"` -> ("test", ("bare", "doubt_correct")); no part after ":"
    gives an empty variant tuple (the task's default variants)."""
    name, _, variants = (spec or default).partition(":")
    return name, tuple(v.strip() for v in variants.split(",") if v.strip())
