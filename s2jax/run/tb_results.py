"""A finished run's evaluation and hyperparameters as TensorBoard summaries.

At the end of `s2jax run`, of each task of `s2jax demo` and of each sweep arm, the writing
process adds one events file to a TensorBoard log directory: the run's `train/tb` (beside its
training curves), or a sweep's `ROOT/log/tb/<arm>` (`tensorboard --logdir ROOT` shows those
next to each fine-tuning stage's curves in `stages/finetune-*/log/train/tb`). It holds

    scalars   eval/<split>/<system>/{accuracy, tokens_per_answer} for every row of results.json
              (System 1, System 2, distilled; test and validation splits),
              retention/<suite>/<base|distilled>/..., and distill/kept, all at step 0
    hparams   the run's config flattened to dotted keys (method, sampling.n,
              distill.vote.threshold, train.learning_rate, train.steps, train.lora.rank,
              train.seed, ...) as the HParams plugin's session start (and end) record

No experiment record is written: TensorBoard then builds the HParams table from every run's
session and scalar tags, so arms whose configs set different fields still share one table.
Nothing in the directory is replaced or purged; a rerun adds another events file, whose values
TensorBoard shows as the latest.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s2jax.train.metrics import summary_writer

STEP = 0  # the step the evaluation scalars are logged at
Scalar = str | int | float | bool


def flatten(config: Any, prefix: str = "") -> dict[str, Scalar]:
    """{dotted key: value} of a JSON config; lists become JSON strings, None values are left
    out (the HParams plugin has no null)."""
    if isinstance(config, Mapping):
        out: dict[str, Scalar] = {}
        for k, v in config.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    key = prefix[:-1]
    if config is None:
        return {}
    if isinstance(config, list | tuple):
        return {key: json.dumps(config, default=str)}
    return {key: config if isinstance(config, Scalar) else str(config)}


def run_hparams(d) -> dict[str, Scalar]:
    """A resolved run's hyperparameters (`s2jax.run.pipeline.Distillation`): its config's
    fields, and the resolved method, task, sampling, filter and training where the config
    names them otherwise (the demo's)."""
    resolved = {"method": d.program.name, "task": d.task.name,
                "sampling": dataclasses.asdict(d.sampling),
                "distill": dataclasses.asdict(d.distill), "train": dataclasses.asdict(d.train)}
    return {**flatten(resolved), **flatten(dict(d.config))}


def _row_scalars(prefix: str, row: Mapping) -> dict[str, float]:
    return {f"{prefix}/{k}": float(row[k]) for k in ("accuracy", "tokens_per_answer")
            if isinstance(row.get(k), int | float)}


def eval_scalars(results: Mapping, split: str = "test") -> dict[str, float]:
    """{tag: value} of a results.json: each row's accuracy and tokens per answer (a row without
    "split" is on `split`), retention suites, and the filter's kept inputs."""
    out: dict[str, float] = {}
    for row in [*results.get("rows", []), *results.get("validation", [])]:
        out.update(_row_scalars(f"eval/{row.get('split', split)}/{row['system']}", row))
    for suite, who in results.get("retention", {}).items():
        for part, row in who.items():
            out.update(_row_scalars(f"retention/{suite}/{part}", row))
    kept = results.get("distill", {}).get("kept")
    if isinstance(kept, int):
        out["distill/kept"] = float(kept)
    return out


def write_tb_results(logdir: str | Path, results: Mapping, hparams: Mapping[str, Scalar],
                     split: str = "test") -> dict[str, float]:
    """Adds the evaluation scalars and the hparams session of `results` to `logdir` (made if
    absent); returns the scalars written. Call it from the writing process only."""
    SummaryWriter = summary_writer()  # without torch (`metrics.summary_writer`)
    # tensorboardX only where a run ends (loaded by the line above)
    from tensorboardX.summary import hparams as hparams_summaries

    scalars = eval_scalars(results, split)
    # events files are named by the second and the host: a suffix of its own keeps this one
    # from ever opening (and truncating) the training log's file or an earlier one of these
    writer = SummaryWriter(str(logdir), filename_suffix=f".eval.{uuid.uuid4().hex[:12]}")
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, STEP)
        _, start, end = hparams_summaries(dict(hparams), scalars)
        for summary in (start, end):
            writer.file_writer.add_summary(summary, STEP)
    finally:
        writer.close()
    return scalars
