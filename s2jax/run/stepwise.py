"""Stepwise internalization in a distillation run: the student evaluated after every stage.

A run whose fine-tuning has a removal curriculum (`TrainConfig.curriculum`, distillation target
"trace") evaluates System 1's prompt on the test inputs after each stage, into
eval/stage<k>.jsonl (shard-resumable like every evaluation), and reports one row per stage:
the trace tokens removed so far, accuracy and generated tokens per answer. Together they draw
the accuracy-tokens curve from the full trace down to none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.shards import is_complete
from s2jax.distill.evaluate import EvalResult
from s2jax.train.config import CurriculumConfig
from s2jax.train.curriculum import stage_start


def stage_system(stage: int) -> str:
    """The evaluation row's system name of curriculum stage `stage`."""
    return f"stage{stage}"


class StageEvaluations:
    """`finetune`'s `on_stage` callback: puts the stage's weights in the sampler, evaluates.

    Args:
      evaluate: evaluates the student as a given system name (see `stage_system`); resumable.
      sampler: the sampler whose weights are replaced by the model's.
      model: the model `finetune` trains (it holds the stage's weights during the call).
      curriculum: the run's curriculum (tokens removed per stage).
    """

    def __init__(self, evaluate: Callable[[str], EvalResult], sampler, model,
                 curriculum: CurriculumConfig):
        self.evaluate, self.sampler, self.model = evaluate, sampler, model
        self.curriculum = curriculum
        self.rows: dict[int, dict] = {}

    def __call__(self, stage: int, step: int) -> None:
        self.sampler.set_params(self.model.params())
        row = self.evaluate(stage_system(stage))
        self.rows[stage] = {"stage": stage, "step": step,
                            "removed": stage * self.curriculum.tokens_per_stage,
                            **row.to_json()}

    def reread(self, train_dir: Path, eval_dir: Path) -> None:
        """The rows of a finished fine-tuning run, from its complete evaluation files."""
        summary = json.loads((train_dir / "summary.json").read_text())
        stages = summary["stages"]
        for stage in range(stages):
            path = eval_dir / f"{stage_system(stage)}.jsonl"
            if not is_complete(path):  # its weights are gone: only the last stage's are kept
                raise S2JaxError(f"{path}: the evaluation of curriculum stage {stage} is not "
                                 f"complete but {train_dir} finished; remove {train_dir} to "
                                 "train and evaluate again")
            last = stage == stages - 1
            self(stage, summary["steps"] if last else stage_start(stage + 1, self.curriculum))

    def table(self) -> list[dict]:
        """The rows in stage order."""
        return [self.rows[k] for k in sorted(self.rows)]
