"""The experimental protocol around a distillation: cross-fitting folds and control variants.

Folds (`CrossFit`): one labelled pool (the config's `test` inputs) is cut into K folds by a
seeded permutation of its groups (an input field such as the country, or each input alone);
fold k's model is distilled on the other folds' inputs (those `distil_on` names, e.g. one
template), labels stripped, and tested on all of fold k. Every item is tested exactly once, by
a model that never saw it (nor, with a group, its group), so the K folds' test rows together
pair item by item with the base model's rows on the whole pool.

Controls (`ExperimentConfig.control`) change what the fine-tuning targets are, one line each:
  system1       the samples come from System 1 itself (the paper's "Distill System 1": does the
                vote alone, without System 2, lift System 1?)
  own_unbiased  each input's targets come from the base model answering its bare question (the
                input without the user's opinion; "bias-augmented consistency training"): label
                free, no System 2; the training prompt stays the biased input
  gold          the inputs the filter kept, with their gold labels as targets: the ceiling of
                a perfect filter on the same inputs (it reads labels: a control, not a method)
  shuffled      the kept answers permuted among the kept inputs: what fine-tuning on the
                answer format alone does
Pure Python: no JAX.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from s2jax.core.errors import S2JaxError
from s2jax.distill.dataset import DistillSet
from s2jax.tasks.task import Example, Task

UNBIASED_FIELD = "base_question"  # the question without the user's opinion (sycophancy tasks)


def fold_of(ids: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """Each id's fold: a seeded permutation of the pool dealt round-robin (sizes differ by <= 1)."""
    order = list(range(len(ids)))
    random.Random(f"cross_fit/{seed}").shuffle(order)
    return {ids[i]: position % folds for position, i in enumerate(order)}


def _field(ex: Example, field: str, what: str) -> str:
    if field not in ex.fields:
        raise S2JaxError(f"cross_fit.{what}: input {ex.id!r} has no field {field!r} (it has "
                         f"{sorted(ex.fields)})")
    return str(ex.fields[field])


def group_of(pool: Sequence[Example], group: str = "") -> list[str]:
    """Each pool input's fold unit: its `group` field's value, or its id when `group` is ""."""
    return [_field(ex, group, "group") if group else ex.id for ex in pool]


def distilled_inputs(pool: Sequence[Example], distil_on: str = "", *,
                     what: str = "distil_on") -> list[Example]:
    """The pool inputs that System 2 runs on and the folds distil on ("FIELD=VALUE", or all);
    with `what="system2_on"`, those the base System 2 is evaluated on."""
    if not distil_on:
        return list(pool)
    field, _, value = distil_on.partition("=")
    out = [ex for ex in pool if _field(ex, field.strip(), what) == value.strip()]
    if not out:
        raise S2JaxError(f"cross_fit.{what}={distil_on!r}: no pool input has it (expected "
                         "a value some inputs carry)")
    return out


def fold_split(pool: Sequence[Example], folds: int, seed: int, k: int, *, group: str = "",
               distil_on: str = "") -> tuple[list[Example], list[Example]]:
    """(fold k's test inputs, the inputs fold k's model is distilled on), each in pool order.

    Folds are dealt over groups (`group_of`), so every input of one group is in one fold; fold
    k is tested on all its inputs and distilled on the other folds' `distil_on` inputs.
    """
    groups = group_of(pool, group)
    fold = fold_of(list(dict.fromkeys(groups)), folds, seed)
    test = [ex for ex, g in zip(pool, groups, strict=True) if fold[g] == k]
    train_ids = {ex.id for ex, g in zip(pool, groups, strict=True) if fold[g] != k}
    return test, [ex for ex in distilled_inputs(pool, distil_on) if ex.id in train_ids]


def unbiased(examples: Sequence[Example], task: Task) -> list[Example]:
    """The bare-question version of each input (same id), for the "own_unbiased" control."""
    missing = next((ex.id for ex in examples if UNBIASED_FIELD not in ex.fields), None)
    if missing is not None:
        raise S2JaxError(f"control own_unbiased: input {missing!r} of task {task.name} has no "
                         f"{UNBIASED_FIELD!r} field (expected a sycophancy-style task whose "
                         "inputs carry the question without the user's opinion)")
    return [dataclasses.replace(ex, fields={**ex.fields, "question": ex.fields[UNBIASED_FIELD]})
            for ex in examples]


def with_fields(records: Sequence[Mapping], fields: Mapping[str, Mapping[str, str]]
                ) -> list[dict]:
    """Records whose inputs are replaced by `fields[id]` (the training prompt of a control)."""
    return [{**r, "fields": dict(fields[r["id"]])} for r in records]


def _retarget(example: dict, task: Task, answer: str) -> dict:
    messages = [*example["messages"][:-1],
                {"role": "assistant", "content": task.target(answer)}]
    out = {**example, "answer": answer, "messages": messages}
    if "teacher_messages" in example:  # the teacher's context ends with the same answer
        out["teacher_messages"] = [*example["teacher_messages"][:-1], messages[-1]]
    return out


def apply_control(dset: DistillSet, control: str, task: Task,
                  gold: Mapping[str, Sequence[str]], seed: int) -> DistillSet:
    """The distillation set with a "gold" or "shuffled" control's targets (else as it is).

    Args:
      dset: the filter's set (its kept inputs are the control's inputs).
      control: the config's control.
      task: the task (its `target` makes the assistant turn).
      gold: gold answers by input id (read only by "gold").
      seed: the permutation's seed ("shuffled").
    """
    if control == "gold":
        missing = next((ex["id"] for ex in dset.examples if not gold.get(ex["id"])), None)
        if missing is not None:
            raise S2JaxError(f"control gold: input {missing!r} has no gold answer (expected "
                             "labelled unlabeled inputs for this control)")
        examples = [_retarget(ex, task, gold[ex["id"]][0]) for ex in dset.examples]
    elif control == "shuffled":
        answers = [ex["answer"] for ex in dset.examples]
        random.Random(f"shuffled/{seed}").shuffle(answers)
        examples = [_retarget(ex, task, a) for ex, a in zip(dset.examples, answers, strict=True)]
    else:
        return dset
    return dataclasses.replace(dset, examples=examples)
