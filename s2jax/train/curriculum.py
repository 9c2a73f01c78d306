"""The removal curriculum of stepwise internalization (Deng, Choi, Shieber 2024).

Training runs in stages of `steps_per_stage` optimizer steps (stage 0: `first_stage_steps`, if
set). In stage s every example loses the
first `s * tokens_per_stage` tokens of its trace (`TokenizedExample.trace`, the removable start
of its last assistant turn), or all of them when the trace is shorter; what follows the trace
(the answer) is never removed, and the prompt stays as it was. With removal smoothing each
example loses o more tokens, o drawn with P(o) proportional to exp(-lambda o), so the step from
one stage to the next is not the same cliff for every example. The last stage has no trace left
and runs to the end of the run. With `reset_optimizer` every stage starts with a fresh optimizer
(Adam moments and the learning-rate schedule), as in the paper.

Everything here is a pure function of (seed, stage, epoch): `StagedBatches` resumes from its
state like `Batches`, and stage 0 without smoothing yields exactly `Batches`' rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from s2jax.core.errors import S2JaxError
from s2jax.train.config import CurriculumConfig
from s2jax.train.data import Batch, Batches, TokenizedExample


def remove_trace(example: TokenizedExample, n: int) -> TokenizedExample:
    """`example` without the first `n` tokens of its trace (all of it when shorter)."""
    start, end = example.trace
    n = min(max(n, 0), end - start)
    if not n:
        return example
    keep = np.r_[0:start, start + n:len(example.ids)]
    return TokenizedExample(example.ids[keep], example.loss_mask[keep], (start, end - n))


def smoothing_offsets(rng: np.random.Generator, count: int, lam: float) -> np.ndarray:
    """`count` draws of o in {0, 1, ...} with P(o) = (1 - e^-lam) e^(-lam o); zeros when lam = 0.

    A geometric number of failures: exact, and with no cap on o.
    """
    if not lam:
        return np.zeros(count, np.int64)
    return rng.geometric(-math.expm1(-lam), size=count) - 1


def num_stages(examples: Sequence[TokenizedExample], curriculum: CurriculumConfig) -> int:
    """The configured stages, or enough to remove the longest trace plus one with none left."""
    longest = max((ex.trace[1] - ex.trace[0] for ex in examples), default=0)
    if not longest:
        raise S2JaxError("train config curriculum: no example has a trace to remove (expected "
                         "rows with a 'trace' field, e.g. a distill set built with target=trace)")
    if curriculum.stages:
        return curriculum.stages
    return math.ceil(longest / curriculum.tokens_per_stage) + 1


def stage_of(step: int, curriculum: CurriculumConfig, stages: int) -> int:
    """The stage of optimizer step `step` (counted from 1)."""
    first = curriculum.first_steps
    if step <= first:
        return 0
    return min(1 + (step - first - 1) // curriculum.steps_per_stage, stages - 1)


def stage_start(stage: int, curriculum: CurriculumConfig) -> int:
    """Steps taken before stage `stage` begins."""
    return 0 if not stage else curriculum.first_steps + (stage - 1) * curriculum.steps_per_stage


def total_steps(curriculum: CurriculumConfig, stages: int) -> int:
    """Steps of a run that ends with its last stage's `steps_per_stage`."""
    return stage_start(stages - 1, curriculum) + curriculum.steps_per_stage


def stage_ends(step: int, total: int, curriculum: CurriculumConfig, stages: int) -> bool:
    """Whether `step` is the last step of its stage (the run's last step ends the last one)."""
    return step == total or stage_of(step + 1, curriculum, stages) != stage_of(
        step, curriculum, stages)


class StagedBatches(Batches):
    """`Batches` of a removal curriculum: batch b (from 0) is drawn in stage
    `stage_of(b + 1)`, and each stage starts at row 0 of its own epoch 0.

    Stage s > 0 shuffles epoch e by (seed, e, s) and stage 0 by (seed, e), as `Batches` does;
    smoothing offsets come from (seed, e, s, 7). The state adds the stage and the batches drawn.
    """

    def __init__(self, examples: Sequence[TokenizedExample], curriculum: CurriculumConfig,
                 stages: int, **kwargs):
        super().__init__(examples, **kwargs)
        self.curriculum, self.stages = curriculum, stages
        self.stage, self.drawn = 0, 0

    def removal(self, stage: int, epoch: int) -> np.ndarray:
        """Trace tokens each example loses in epoch `epoch` of stage `stage`."""
        n = len(self.examples)
        base = np.full(n, stage * self.curriculum.tokens_per_stage, np.int64)
        rng = np.random.default_rng([self.seed, epoch, stage, 7])
        return base + smoothing_offsets(rng, n, self.curriculum.smoothing)

    def _order(self) -> np.ndarray:
        if not self.stage:
            return super()._order()
        rng = np.random.default_rng([self.seed, self.epoch, self.stage])
        return rng.permutation(len(self.examples))

    def _epoch_examples(self) -> Sequence[TokenizedExample]:
        removal = self.removal(self.stage, self.epoch)
        return [remove_trace(ex, int(r)) for ex, r in zip(self.examples, removal, strict=True)]

    def state(self) -> dict[str, int]:
        return {**super().state(), "stage": self.stage, "drawn": self.drawn}

    def restore(self, state: dict[str, int]) -> None:
        if "stage" not in state or "drawn" not in state:
            raise S2JaxError("data iterator state has no curriculum stage: the checkpoint was "
                             "written by a run without a curriculum; use a new run dir")
        super().restore(state)
        self.stage, self.drawn = int(state["stage"]), int(state["drawn"])

    def __next__(self) -> Batch:
        stage = stage_of(self.drawn + 1, self.curriculum, self.stages)
        if stage != self.stage:
            self.stage, self.epoch, self.row, self._rows = stage, 0, 0, None
        batch = super().__next__()
        self.drawn += 1
        return batch
