"""The stages of System 2 distillation, each a function of resolved objects.

    evaluate_stage   a system (prompt program on the current weights) on labelled inputs
    generate_stage   System 2 with N samples on unlabeled inputs (labels stripped here)
    distill_stage    the label-free filter -> the System 1 distillation set
    finetune_stage   SFT of System 1 on that set -> the distilled weights

`s2jax.run.pipeline.run_distillation` calls them in order for `s2jax run` and `s2jax demo`; the
step commands (`generate-method`, `vote`, `train`) call one each. The two sampling stages run
shard by shard into a resumable JSONL file (`s2jax.core.shards`). A stage whose result cannot mean
anything (nothing kept, a learning rate that never leaves 0) raises `S2JaxError`; one whose
result is weak (few inputs kept, most answers unreadable) returns it with warnings that the run
prints loudly and records in results.json.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from s2jax.core.errors import NonResult, S2JaxError
from s2jax.core.hashing import json_hash
from s2jax.core.ownership import ADAPTER, MODEL, TRAIN_RUN, check_dir
from s2jax.core.progress import StageBar
from s2jax.core.shards import run_sharded
from s2jax.core.text_generator import SamplingParams, TextGenerator
from s2jax.distill.dataset import (
    DISTILL_SET,
    DistillConfig,
    DistillSet,
    build_distill_set,
    provenance,
    write_distill_set,
)
from s2jax.distill.evaluate import EvalResult, score_examples, summarize
from s2jax.methods.program import Program
from s2jax.methods.records import generate_records
from s2jax.parallel.distributed import barrier, is_writer
from s2jax.parallel.remote_root import synced
from s2jax.tasks.task import Example, Task

Log = Callable[[str], None]

# Below these, a result is reported as a non-result (a warning in the log and in results.json).
MIN_KEPT_SHARE = 0.25  # inputs kept by the filter
MAX_UNREADABLE_SHARE = 0.5  # samples (or USC replies) the extractor / parser could not read


def stage_key(**parts) -> str:
    """A short hash of everything that determines a stage's rows."""
    return json_hash(parts)


def processes() -> tuple[bool, Callable[[str], None] | None]:
    """(this process writes, a barrier for multi-process runs or None).

    On an object-store run root the barrier also publishes (process 0) and pulls (the others)
    the root's local copy, and is not None even in a one-process run (`s2jax.parallel.remote_root`).
    """
    writer = is_writer()
    return writer, synced(writer, barrier())


def evaluate_stage(
    system: str,
    program: Program,
    task: Task,
    examples: Sequence[Example],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    path: str | os.PathLike,
    key: str,
    shard_size: int,
    chat: bool = True,
    progress: bool = False,
    split: str | None = None,
) -> EvalResult:
    """Scores `program` on `examples`, shard by shard into `path` (one row per example).

    Args:
      system: the row's label ("system1", "system2", "distilled").
      program: the prompt program.
      task: extraction and scoring.
      examples: labelled inputs.
      generate: the model's text generator.
      params: evaluation sampling.
      path: the per-example JSONL; a killed run resumes from its finished shards.
      key: what else determines the rows (model, run); hashed with the stage's own settings.
      shard_size: examples per shard.
      chat: chat-template prompts.
      progress: a progress bar on stderr.
      split: the examples' split, recorded in each row (the report groups by it).

    Returns:
      The table row; `seconds` sums the generation time of every shard.
    """
    writer, sync = processes()
    full_key = stage_key(stage="evaluate", system=system, program=program.name, task=task.name,
                         params=dataclasses.asdict(params), chat=chat, shard=shard_size, key=key)
    with StageBar(generate, f"{task.name}: {system} ({program.name})",
                  progress and writer) as bar:
        rows, seconds = run_sharded(
            path, list(examples), [ex.id for ex in examples], key=full_key, shard_size=shard_size,
            work=lambda chunk: score_examples(program, task, chunk, bar, params, chat=chat,
                                              split=split),
            progress=bar.shards, sync=sync, writer=writer)
    return summarize(system, program, rows, seconds)


def strip_labels(examples: Sequence[Example]) -> list[Example]:
    """The inputs without their gold answers: System 2 distillation never reads a label."""
    return [dataclasses.replace(ex, gold=()) for ex in examples]


def generate_stage(
    program: Program,
    task: Task,
    examples: Sequence[Example],
    generate: TextGenerator,
    params: SamplingParams,
    *,
    path: str | os.PathLike,
    key: str,
    shard_size: int,
    perturb: bool = False,
    usc: bool = False,
    chat: bool = True,
    progress: bool = False,
) -> list[dict]:
    """System 2 samples of `examples`, labels stripped, shard by shard into generations.jsonl.

    Args:
      program: the System 2 method.
      task: the task (its perturbation, when `perturb`).
      examples: the inputs; their labels are dropped before anything is generated.
      generate: the model's text generator.
      params: sampling; `params.n` samples per input.
      path: generations.jsonl; a killed run resumes from its finished shards.
      key: what else determines the records (model, run); hashed with the stage's settings.
      shard_size: inputs per shard.
      perturb: also sample each input's perturbation (filter "perturbation").
      usc: also run the Universal Self-Consistency stage (filter "usc").
      chat: chat-template prompts.
      progress: a progress bar on stderr.

    Returns:
      The generations.jsonl records, in input order.
    """
    if perturb and task.perturbation is None:
        raise S2JaxError(f"perturb: task {task.name} has no perturbation (expected a pairwise "
                         "task, or perturb off)")
    writer, sync = processes()
    unlabeled = strip_labels(examples)
    full_key = stage_key(stage="generate", program=program.name, task=task.name,
                         params=dataclasses.asdict(params), perturb=perturb, usc=usc, chat=chat,
                         shard=shard_size, key=key)
    with StageBar(generate, f"{task.name}: System 2 ({program.name}) x{params.n}",
                  progress and writer) as bar:
        records, _ = run_sharded(
            path, unlabeled, [ex.id for ex in unlabeled], key=full_key, shard_size=shard_size,
            work=lambda chunk: generate_records(
                program, chunk, bar, params, task=task.name,
                perturbation=task.perturbation if perturb else None, usc=usc, chat=chat),
            progress=bar.shards, sync=sync, writer=writer)
    return records


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def distill_warnings(dset: DistillSet, config: DistillConfig) -> list[str]:
    """What makes a distillation set a weak result, with the counts."""
    s, out = dset.stats, []
    if _share(s.kept, s.inputs) < MIN_KEPT_SHARE:
        out.append(f"the filter kept {s.kept} of {s.inputs} inputs "
                   f"({100 * _share(s.kept, s.inputs):.0f}% < {100 * MIN_KEPT_SHARE:.0f}%)")
    if _share(s.abstentions, s.samples) > MAX_UNREADABLE_SHARE:
        out.append(f"the extractor read no answer in {s.abstentions} of {s.samples} samples")
    unparsable = s.reasons.get("usc_unparsable", 0)
    if config.filter == "usc" and _share(unparsable, s.inputs) > MAX_UNREADABLE_SHARE:
        out.append(f"the USC reply was unparsable for {unparsable} of {s.inputs} inputs")
    return out


def distill_stage(
    records: Sequence[Mapping],
    task: Task,
    config: DistillConfig,
    out_dir: str | os.PathLike,
    *,
    generations: str,
    model: str | None = None,
    sampling: Mapping | None = None,
    retarget: Callable[[DistillSet], DistillSet] | None = None,
    context: Program | None = None,
) -> tuple[DistillSet, list[str]]:
    """Filters `records` into the distillation set and writes it to `out_dir` (atomically).

    Args:
      records: generations.jsonl records.
      task: their task (extractor and answer keys).
      config: the filter.
      out_dir: the output directory; an existing one must be a distillation set made from
        the same generations file, else it is refused.
      generations: path of the generations file (recorded in the provenance).
      model: the checkpoint that generated them, when known.
      sampling: their sampling parameters, when known.
      retarget: replaces the kept inputs' targets (a control, `s2jax.run.protocol`).
      context: the System 2 program that made them, to give each example the teacher's
        System 2 context (token-level context distillation; see `build_distill_set`).

    Returns:
      The set and its warnings (see `distill_warnings`). A set that kept nothing is not
      written; `require_examples` says whether there is anything to fine-tune on.
    """
    check_dir(out_dir, "distillation set dir", DISTILL_SET, key=generations,
              key_name="generations file", whole=True)
    wrong = sorted({r["task"] for r in records} - {task.name})
    if wrong:
        raise S2JaxError(f"{generations} holds task(s) {wrong}, not task {task.name}")
    dset = build_distill_set(records, task, config, context)
    if retarget is not None:
        dset = retarget(dset)
    prov = provenance(records, task, config, dset, generations=generations, model=model,
                      sampling=sampling)
    warnings = distill_warnings(dset, config)
    writer, sync = processes()
    if writer and dset.examples:  # an empty set is no artifact: `require_examples` refuses it
        write_distill_set(out_dir, dset, {**prov, "warnings": warnings})
    if sync:
        sync(f"wrote {out_dir}")
    return dset, warnings


def require_examples(stats: Mapping, where: str) -> None:
    """Raises when the filter kept nothing: fine-tuning on an empty set cannot mean anything."""
    if stats["kept"]:
        return
    reasons = ", ".join(f"{k} {v}" for k, v in stats["reasons"].items() if v)
    raise NonResult(f"{where}: the filter kept no examples of {stats['inputs']} inputs "
                     f"({reasons or 'no inputs'}); lower distill.vote.threshold, draw more "
                     "samples, or check the extractor on these outputs")


def check_train_dir(run_dir: str | os.PathLike, what: str, base: str) -> None:
    """Before any work: `run_dir` may hold this fine-tuning run (fresh, or s2jax's run of the
    same base whose exported model/ and adapter/ nobody changed)."""
    from s2jax.train.loop import check_base  # the train loop (JAX, optax, orbax): see below

    if check_dir(run_dir, what, TRAIN_RUN):
        for sub, kind in (("model", MODEL), ("adapter", ADAPTER)):
            check_dir(Path(run_dir) / sub, what, kind, whole=True)
        check_base(run_dir, base)


# `plan`'s closed form is an estimate (2.5% to 27% from the compiled step in docs/plan.md); a
# run is refused only when it needs more than this many times what is free: no flag typo (a
# seq_len of 1e9) escapes that, and no run that might fit trips over it.
TRAIN_MEMORY_SLACK = 2.0


def check_train_memory(model, config, mesh=None, teacher=None) -> None:
    """Before any training work: the step's estimated memory (`s2jax plan`'s closed form,
    per device, for the mesh it will run on) fits in what the devices have free. With
    `config.kd` on it counts the frozen teacher's weights (`teacher`, default the student's
    own base) as `plan` counts them."""
    # JAX and the planner only for fine-tuning: `vote` uses the other stages
    from s2jax.models.params import num_params
    from s2jax.models.transformer import resolve_remat
    from s2jax.parallel.memory import check_fits_devices
    from s2jax.run.plan import hand_estimate, hand_teacher
    from s2jax.train.loop import train_mesh

    mesh = train_mesh(model, config, mesh)
    remat = resolve_remat(config.remat)  # as the step will run it, on this backend
    config = dataclasses.replace(config, remat=remat)
    hand = hand_estimate(model.config, config, dict(mesh.shape), 1, 1, "float32")
    if config.kd.enabled:
        hand = hand_teacher(hand, (teacher or model).config, config, dict(mesh.shape), 1, 1,
                            "float32")
    per_device = hand["train_total"]
    devices = list(mesh.devices.flat)
    check_fits_devices(per_device * len(devices) / TRAIN_MEMORY_SLACK, devices,
                       f"training (batch_size={config.batch_size}, seq_len={config.seq_len}, "
                       f"{num_params(model.config):,} weights"
                       + (", a frozen teacher's too" if config.kd.enabled else "")
                       + "; halved estimate)",
                       "lower batch_size or seq_len, use remat, LoRA or more devices "
                       "(`s2jax plan` shows the estimate)")


def finetune_stage(model, tokenizer, examples: Sequence, config, run_dir: str | os.PathLike, *,
                   mesh=None, eval_examples: Sequence | None = None,
                   on_stage: Callable[[int, int], None] | None = None, teacher=None,
                   teacher_tokenizer=None, checkpoint_dir=None, final_checkpoint=True):
    """Fine-tunes System 1 (resuming from `run_dir`), exports it, and returns the model.

    `finetune` refuses a schedule whose learning rate never leaves 0 and non-finite weights;
    with a removal curriculum it calls `on_stage(stage, step)` after every stage. With
    `config.kd` on, `teacher` (default: the student's own loaded weights) runs frozen in
    every step on the examples' `teacher_messages` (rendered by `teacher_tokenizer`).
    `checkpoint_dir` (default `run_dir/checkpoints`) may be on an object store (gs://);
    `final_checkpoint=False` skips the checkpoint after the last step (`finetune`).
    """
    # the train loop (JAX, optax, orbax) only for fine-tuning: `vote` uses the other stages
    from s2jax.train.loop import finetune

    if not examples:
        raise S2JaxError("fine-tuning: no examples (expected a non-empty distillation set)")
    check_train_memory(model, config, mesh, teacher)
    return finetune(model, tokenizer, examples, config, Path(run_dir), mesh=mesh,
                    eval_examples=eval_examples, on_stage=on_stage, teacher=teacher,
                    teacher_tokenizer=teacher_tokenizer, checkpoint_dir=checkpoint_dir,
                    final_checkpoint=final_checkpoint)
