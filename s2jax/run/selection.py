"""Choosing one arm of a sweep on the validation split, before any test number exists.

A sweep file names its rule (`selection = Selection("accuracy")`). The sweep evaluates every
arm's distilled model on the validation split, writes the selection record (`selection.json`:
the rule, each candidate's metric, the chosen arm and its config hash), and only then runs any
test evaluation; arms other than the chosen one are marked `"exploratory": true` in their
results.json. A selection made when test evaluations of the sweep's arms already existed (the
rule or the arms changed after test numbers were seen) is refused unless asked for with
`--reselect-after-test`, and is then recorded as such (`"after_test": true`) in the record and
in every arm's warnings, which reports print.
Pure Python.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from s2jax.core.errors import S2JaxError

METRICS = ("accuracy", "tokens_per_answer")
SPLIT = "validation"  # the only split a rule may read


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which arm a sweep confirms on test: the best distilled model on the validation split.

    Ties are broken by the other metric (more accurate, or fewer tokens per answer), then by
    the arm's position in the sweep.
    """

    metric: Literal["accuracy", "tokens_per_answer"] = "accuracy"  # higher accuracy is better;
    # fewer tokens per answer is better

    def __post_init__(self):
        if self.metric not in METRICS:
            raise S2JaxError(f"selection metric={self.metric!r}: expected one of {METRICS} "
                             f"(always of the distilled model on the {SPLIT} split)")

    def to_json(self) -> dict:
        return {"metric": self.metric, "system": "distilled", "split": SPLIT}


def metrics(rows: Sequence[Mapping]) -> dict[str, float]:
    """Accuracy (%) and tokens per answer of per-item evaluation rows."""
    n = max(len(rows), 1)
    return {"accuracy": 100.0 * sum(r["score"] for r in rows) / n,
            "tokens_per_answer": sum(r["tokens"] for r in rows) / n, "examples": len(rows)}


def choose(rule: Selection, candidates: Mapping[str, Sequence[Mapping]],
           hashes: Mapping[str, str]) -> dict:
    """The selection record of `rule` over {arm: its distilled validation rows}, in sweep order.

    Args:
      rule: the rule.
      candidates: validation rows per arm (an arm whose filter kept nothing has none and
        cannot be chosen).
      hashes: each arm's config hash (what the record names as chosen).

    Returns:
      {"rule", "candidates": {arm: {metric values, "config"}}, "chosen", "config"}.
    """
    scored = {arm: {**metrics(rows), "config": hashes[arm]}
              for arm, rows in candidates.items() if rows}
    if not scored:
        raise S2JaxError("selection: no arm has a distilled model evaluated on the validation "
                         "split (every filter kept nothing?)")
    order = list(candidates)
    sign = {"accuracy": -1.0, "tokens_per_answer": 1.0}
    other = next(m for m in METRICS if m != rule.metric)
    best = min(scored, key=lambda a: (sign[rule.metric] * scored[a][rule.metric],
                                      sign[other] * scored[a][other], order.index(a)))
    return {"rule": rule.to_json(), "candidates": scored, "chosen": best,
            "config": hashes[best]}


def rule_of(namespace: Mapping) -> Selection | None:
    """The `selection` a sweep file defines, if any."""
    rule = namespace.get("selection")
    if rule is None or isinstance(rule, Selection):
        return rule
    raise S2JaxError(f"sweep file: selection is a {type(rule).__name__}, expected "
                     "s2jax.run.selection.Selection(metric=...)")
