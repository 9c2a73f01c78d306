"""One System 2 distillation run: the stage sequence, resumable, each stage leaving an artifact.

  config.json                the resolved config (a rerun must match it)
  eval/system1.jsonl         per-example evaluation of the base model (System 1, System 2) on
  eval/system2.jsonl         the test split, shard by shard; eval_base.json sums them up
  generations.jsonl          System 2 with N samples on the unlabeled inputs (labels stripped)
  distill/                   the label-free filter's System 1 set: train.parquet, provenance, stats
  train/                     checkpoints, metrics, and the exported model/ (HF format)
  eval/distilled.jsonl       the distilled System 1 on the test split
  eval/stage<k>.jsonl        with a removal curriculum: the student after each stage
  results.json               the table: base System 1, base System 2, distilled System 1
                             (+ "curriculum": one row per stage, `s2jax.run.stepwise`)

  onpolicy/                  with `onpolicy` set, instead of generations, distill/ and train/:
                             the teacher's contexts, the pool and the rounds (s2jax.run.onpolicy)

`run_distillation` is the sequence (`s2jax run` and `s2jax demo` both call it):
evaluate_stage x2 -> generate_stage -> distill_stage -> finetune_stage -> evaluate_stage
(on-policy: evaluate_stage x2 -> onpolicy_stage -> evaluate_stage).
A finished stage is skipped and a killed sampling stage resumes at its first unfinished shard,
so a kill loses at most one shard (training resumes from its last orbax checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import DISTILL_SET, check_dir
from s2jax.core.rundir import check_claim, claim, locked
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import PARQUET, DistillConfig
from s2jax.distill.evaluate import EvalResult
from s2jax.distill.trace import trace_task
from s2jax.methods.catalog import METHODS, SYSTEM1, method
from s2jax.methods.program import Program
from s2jax.parallel.remote_root import checkpoint_dir, worked_on
from s2jax.run.config import DataConfig, ExperimentConfig
from s2jax.run.onpolicy import onpolicy_stage
from s2jax.run.stages import (
    MAX_UNREADABLE_SHARE,
    check_train_dir,
    distill_stage,
    evaluate_stage,
    finetune_stage,
    generate_stage,
    processes,
    require_examples,
    stage_key,
)
from s2jax.run.stepwise import StageEvaluations
from s2jax.run.tb_results import run_hparams, write_tb_results
from s2jax.tasks import TASKS, load_examples
from s2jax.tasks.task import Example, Task
from s2jax.tasks.toy.world import TASKS as TOY
from s2jax.train.config import OnPolicyConfig, TrainConfig
from s2jax.train.data import read_examples
from s2jax.train.metrics import TB

Log = Callable[[str], None]
TOY_PREFIX = "toy/"  # `task = "toy/coin_flip"` names a task of the toy world


@dataclasses.dataclass(frozen=True)
class Distillation:
    """Everything one distillation run needs, resolved: programs, tasks, inputs, configs."""

    name: str
    program: Program  # the System 2 method
    system1: Program  # the task's direct prompt
    task: Task
    test_task: Task
    test: Sequence[Example]  # labelled held-out inputs
    unlabeled: Sequence[Example]  # System 2's inputs (their labels are stripped before use)
    sampling: SamplingParams
    eval_sampling: SamplingParams
    distill: DistillConfig
    train: TrainConfig
    model: str  # the base model's path (provenance)
    fingerprint: str  # of the config: a rerun in the same run dir must match it
    config: Mapping[str, Any]  # written to config.json
    perturb: bool = False
    usc: bool = False
    chat: bool = True
    shard_size: int = 128
    dtype: str | None = None  # of the reloaded distilled weights
    test_split: str = "test"  # the test examples' split name, recorded in the eval rows
    fail_on_empty: bool = True  # a filter that kept nothing is an error (else a marked row)
    teacher: str = ""  # the teacher's checkpoint when it is not the student (provenance)
    teacher_context: bool = False  # examples carry the teacher's System 2 context (train.kd)
    onpolicy: OnPolicyConfig | None = None  # on-policy rounds instead of vote -> fine-tune


@dataclasses.dataclass(frozen=True)
class TeacherModels:
    """A teacher loaded apart from the student: its model, tokenizer and sampler."""

    model: Any
    tokenizer: Any
    sampler: Any


def resolve_task(name: str, tasks: Mapping[str, Task], field: str) -> Task:
    """A task by name: from `tasks`, or the toy world's for "toy/NAME"."""
    if name in tasks:
        return tasks[name]
    if name.startswith(TOY_PREFIX):
        toy = name[len(TOY_PREFIX):]
        if toy in TOY:
            return dataclasses.replace(TOY[toy].task, name=name)
    known = [*tasks, *(TOY_PREFIX + t for t in TOY)]
    raise S2JaxError(f"config {field} {name!r}: expected one of {', '.join(known)}")


def task_examples(task: Task, data: DataConfig, field: str) -> list[Example]:
    """A task's examples per a `DataConfig` (synthetic or loaded)."""
    if data.synthetic:
        if task.synthesize is None:
            raise S2JaxError(f"config {field}.synthetic: task {task.name} has no generator; "
                             "set a source")
        return task.synthesize(data.synthetic, data.seed)
    return load_examples(task, data.source, split=data.split, limit=data.limit, seed=data.seed)


def resolve(config: ExperimentConfig, run_dir: str | Path, *,
            tasks: Mapping[str, Task] = TASKS) -> Distillation:
    """Checks everything a run would reject, before any work: names, model, mesh, inputs, dir.

    `s2jax run --dry-run` calls this and stops; a run calls it and goes on. An object-store
    `run_dir` (gs://) is checked in its local copy (`s2jax.parallel.remote_root`).
    """
    task = resolve_task(config.task, tasks, "task")
    test_task = resolve_task(config.test_task or config.task, tasks, "test_task")
    for field, name in (("method", config.method), ("teacher.method", config.teacher.method)):
        if name and name not in METHODS:
            raise S2JaxError(f"config {field} {name!r}: expected one of {', '.join(METHODS)}")
    if config.perturb and task.perturbation is None:
        raise S2JaxError(f"config perturb: task {task.name} has no perturbation")
    student = _model_config(config.model, "model")
    teacher = (_model_config(config.teacher_model, "teacher.model")
               if config.teacher_model != config.model else student)
    if config.train.kd.enabled and None not in (student, teacher) and \
            student.vocab_size != teacher.vocab_size:
        raise S2JaxError(f"config train.kd.divergence={config.train.kd.divergence}: the teacher "
                         f"{config.teacher_model} has {teacher.vocab_size} tokens, the student "
                         f"{student.vocab_size}; token-level distillation needs one vocabulary "
                         "(set train.kd.divergence=none to distil through text)")
    if config.mesh:
        # JAX only when a mesh is checked against the devices: commands import this module early
        import jax

        from s2jax.parallel.sharding import parse_mesh

        sizes = parse_mesh(config.mesh)
        need = 1
        for v in sizes.values():
            need *= v
        if need > jax.device_count():
            raise S2JaxError(f"config mesh {config.mesh!r}: needs {need} devices, "
                             f"{jax.device_count()} available")
    with worked_on(run_dir) as local:
        fingerprint = _run_key(config, local)
    # a schedule that stays at 0 is known now when the steps are fixed (else from the data)
    from s2jax.train.loop import check_schedule

    check_schedule(config.train, config.train.steps or config.train.warmup_steps + 2)
    test = task_examples(test_task, config.test, "test")
    unlabeled = task_examples(task, config.unlabeled, "unlabeled")
    for field, examples in (("test", test), ("unlabeled", unlabeled)):
        if not examples:
            raise S2JaxError(f"config {field}: no examples (expected at least one input)")
    return Distillation(
        name=config.name, program=method(config.teacher_method, task.system1),
        system1=method(SYSTEM1, task.system1), task=task, test_task=test_task, test=test,
        unlabeled=unlabeled, sampling=config.teacher_sampling,
        eval_sampling=config.eval_sampling, distill=config.distill,
        train=dataclasses.replace(config.train, export=True), model=config.model,
        fingerprint=fingerprint, config=config.to_json(), perturb=config.perturb,
        usc=config.usc, chat=config.chat, shard_size=config.shard_size, dtype=config.dtype,
        test_split=(config.test.split or "test").partition(":")[0],
        teacher=config.teacher_model if config.separate_teacher else "",
        teacher_context=config.train.kd.enabled and config.teacher.context == "system2",
        onpolicy=config.onpolicy)


def _run_key(config: ExperimentConfig, run_dir: Path) -> str:
    """The run's fingerprint: its config's and its weights' (not their paths); a rerun in
    `run_dir` is checked against it, and what it would replace there, now."""
    from s2jax.models.loading import identity  # the model stack only once a run is checked

    base = identity(config.model)
    teacher = ({"teacher": identity(config.teacher_model)}
               if config.teacher_model != config.model else {})
    fingerprint = stage_key(config=config.fingerprint(), base=base, **teacher)
    if check_claim(run_dir, fingerprint):
        check_dir(run_dir / "distill", "run dir's distill/", DISTILL_SET, whole=True)
        check_train_dir(run_dir / "train", "run dir's train/", base)
    return fingerprint


def _model_config(name: str, field: str):
    """The `ModelConfig` of a model a config names (None for a GGUF file, read at load)."""
    # the model stack (JAX) only once a run is checked: commands import this module early
    from s2jax.models.config import ModelConfig
    from s2jax.models.fetch import resolve as fetched_model
    from s2jax.models.gguf import find_gguf

    path = fetched_model(name)  # a pinned name must be fetched already
    if find_gguf(path) is not None:
        return None
    if not (path / "config.json").is_file():
        raise S2JaxError(f"config {field} {name}: no config.json (expected a local HF "
                         "checkpoint directory, a .gguf file or a fetched model's name)")
    return ModelConfig.from_file(path / "config.json")


def _row_warnings(row: EvalResult) -> list[str]:
    if row.examples and row.abstentions > MAX_UNREADABLE_SHARE * row.examples:
        return [f"{row.system} ({row.method}): no answer read in {row.abstentions} of "
                f"{row.examples} test examples"]
    return []


def run_distillation(d: Distillation, run_dir: str | Path, model, tokenizer, sampler, *,
                     mesh=None, log: Log = print, progress: bool = True,
                     teacher: TeacherModels | None = None) -> dict:
    """The stage sequence on a loaded model and its sampler; returns results.json's contents.

    Args:
      d: the resolved run.
      run_dir: where the artifacts go (locked against a second run while this one works).
      model: the base model (the student); fine-tuning replaces its weights.
      tokenizer: its tokenizer.
      sampler: a `TextGenerator` on `model` with `set_params` (the distilled weights go in).
      mesh: the device mesh the model was loaded on.
      log: where progress lines and warnings go.
      progress: progress bars on stderr.
      teacher: the System 2 model when it is not the student: it is evaluated with System 2,
        samples the distillation set and, with `d.train.kd` on, runs in the train steps.

    Returns:
      `{"name", "task", "method", "rows": [system1, system2, distilled?], "distill": stats,
      "warnings": [...], "seconds": {...}}`
    """
    writer, sync = processes()

    def write(path: Path, obj) -> None:
        if writer:
            write_json(path, obj)
        if sync:
            sync(f"wrote {path.name}")

    with locked(run_dir, writer=writer, key=d.fingerprint) as run_dir:
        claim(run_dir, d.fingerprint, d.config, writer=writer)
        done = run_dir / "results.json"
        if done.is_file():
            log(f"[{d.name}] done already: {done}")
            return json.loads(done.read_text())

        system2 = teacher.sampler if teacher else sampler  # the teacher runs System 2

        def evaluate(system: str, program: Program, task: Task = d.test_task,
                     generate=sampler) -> EvalResult:
            row = evaluate_stage(system, program, task, d.test, generate, d.eval_sampling,
                                 path=run_dir / "eval" / f"{system}.jsonl", key=d.fingerprint,
                                 shard_size=d.shard_size, chat=d.chat, progress=progress,
                                 split=d.test_split)
            log(f"[{d.name}] {system}: {row.accuracy:.1f}% at {row.tokens_per_answer:.1f} "
                f"tokens/answer")
            return row

        rows = [evaluate("system1", d.system1), evaluate("system2", d.program, generate=system2)]
        write(run_dir / "eval_base.json", [r.to_json() for r in rows])

        t0 = time.perf_counter()
        distill_dir = run_dir / "distill"
        if d.onpolicy is not None:  # the student's own samples scored by the teacher, in rounds
            stats, warnings = onpolicy_stage(
                d, run_dir, model, tokenizer, system2, sampler,
                teacher=teacher.model if teacher else None,
                teacher_tokenizer=teacher.tokenizer if teacher else None, log=log,
                progress=progress)
            log(f"[{d.name}] on-policy: {d.onpolicy.rounds} rounds over {stats['inputs']} inputs")
        else:
            stats, warnings = _vote(d, run_dir, system2, progress)
            log(f"[{d.name}] distillation set: kept {stats['kept']} of {stats['inputs']} inputs")
        generate_seconds = time.perf_counter() - t0
        warnings = [*warnings, *(w for r in rows for w in _row_warnings(r))]

        t0 = time.perf_counter()
        # a trace-trained student writes "... #### <answer>": read the answer after the mark
        student = trace_task(d.test_task) if d.distill.target == "trace" else d.test_task
        staged = (StageEvaluations(lambda system: evaluate(system, d.system1, student), sampler,
                                   model, d.train.curriculum)
                  if d.train.curriculum.enabled else None)
        if stats["kept"] or d.fail_on_empty:
            require_examples(stats, str(distill_dir / PARQUET))
            if d.onpolicy is None:  # (on-policy rounds left the distilled weights in the sampler)
                # same shapes: compiled programs are reused
                sampler.set_params(_fine_tuned(d, run_dir, model, tokenizer, mesh, staged,
                                               teacher))
            final = evaluate("distilled", d.system1, student)
            rows.append(final)
            warnings += _row_warnings(final)
        else:
            warnings.append(f"nothing to distil: the filter kept 0 of {stats['inputs']} inputs")
        for w in warnings:
            log(f"[{d.name}] WARNING (non-result?): {w}")
        results = {"name": d.name, "task": d.task.name, "method": d.program.name,
                   "teacher": d.teacher or None,
                   "rows": [r.to_json() for r in rows], "distill": stats, "warnings": warnings,
                   **({"curriculum": staged.table()} if staged else {}),
                   "seconds": {"generate": round(generate_seconds, 2),
                               "finetune_and_eval": round(time.perf_counter() - t0, 2)}}
        write(done, results)
        if writer:
            # beside the training curves; a run that trained nothing has no train/ to add to
            train_dir = run_dir / "train"
            write_tb_results((train_dir if train_dir.is_dir() else run_dir) / TB, results,
                             run_hparams(d), d.test_split)
            _write_report(run_dir, log, d.name)
        return results


def _fine_tuned(d: Distillation, run_dir: Path, model, tokenizer, mesh, staged,
                teacher: TeacherModels | None) -> dict:
    """The distilled weights: fine-tuned here (`model` holds them after), or read back from
    the model an earlier run exported."""
    from s2jax.models.loading import load  # JAX only when a run trains

    model_dir = run_dir / "train" / "model"
    if (model_dir / "config.json").is_file():  # trained by an earlier run: from disk
        if staged:
            staged.reread(run_dir / "train", run_dir / "eval")
        return load(model_dir, dtype=d.dtype, mesh=mesh)[0].params()
    # trained here: `model` holds the weights, resharded onto its own mesh
    examples = read_examples(run_dir / "distill" / PARQUET)
    finetune_stage(model, tokenizer, examples, d.train, run_dir / "train", mesh=mesh,
                   on_stage=staged, teacher=teacher.model if teacher else None,
                   teacher_tokenizer=teacher.tokenizer if teacher else None,
                   checkpoint_dir=checkpoint_dir(run_dir / "train"))
    return model.params()


def _vote(d: Distillation, run_dir: Path, system2, progress: bool) -> tuple[dict, list[str]]:
    """System 2 samples of the unlabeled inputs, and the filter's distillation set of them
    (read back when an earlier run made it): (its statistics, its warnings)."""
    gen_path = run_dir / "generations.jsonl"
    records = generate_stage(d.program, d.task, d.unlabeled, system2, d.sampling,
                             path=gen_path, key=d.fingerprint, shard_size=d.shard_size,
                             perturb=d.perturb, usc=d.usc, chat=d.chat, progress=progress)
    distill_dir = run_dir / "distill"
    if (distill_dir / PARQUET).is_file():
        stats = json.loads((distill_dir / "vote_stats.json").read_text())
        return stats, json.loads((distill_dir / "provenance.json").read_text())["warnings"]
    dset, warnings = distill_stage(records, d.task, d.distill, distill_dir,
                                   generations=str(gen_path), model=d.teacher or d.model,
                                   sampling=dataclasses.asdict(d.sampling),
                                   context=d.program if d.teacher_context else None)
    return dset.stats.to_json(), warnings


def _write_report(run_dir: Path, log: Log, name: str) -> None:
    """report.{md,json,png} of the finished run; a failure is logged, results.json stands."""
    from s2jax.report import report_root  # numpy/matplotlib: only a finished run pays

    try:
        _, paths = report_root(run_dir)
    except S2JaxError as e:
        log(f"[{name}] WARNING: report not written: {e}")
        return
    log(f"[{name}] report: {paths[0]}")


def check_kd_tokenizers(config: ExperimentConfig, tokenizer, teacher_tokenizer) -> None:
    """With train.kd on, a teacher loaded apart from the student has the student's tokenizer
    (its vocabulary size was checked by `resolve`, before either loaded)."""
    if config.train.kd.enabled and teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise S2JaxError(f"config train.kd.divergence={config.train.kd.divergence}: the "
                         f"teacher {config.teacher_model} has another tokenizer than the "
                         f"student {config.model}; token-level distillation needs one "
                         "tokenizer (train.kd.divergence=none distils through text)")


def run_experiment(config: ExperimentConfig, run_dir: str | Path, *,
                   tasks: Mapping[str, Task] = TASKS, log: Log = print,
                   progress: bool = True) -> dict:
    """Runs (or resumes) a configured experiment; returns the contents of results.json.

    Args:
      config: the experiment.
      run_dir: where the artifacts go: a local (or network) directory, or an object-store URL
        (gs://bucket/run) worked on through a local copy, published at every barrier, with the
        orbax checkpoints on the store itself (`s2jax.parallel.remote_root`).
      tasks: where `config.task` is looked up ("toy/NAME" also finds the toy world's tasks).
      log: where progress lines go.
      progress: progress bars on stderr.
    """
    # process 0 holds an object-store root's lock and publishes it; the others pull
    with worked_on(run_dir, lock=True) as local:
        return _run_local(config, local, tasks=tasks, log=log, progress=progress)


def _run_local(config: ExperimentConfig, run_dir: Path, *, tasks: Mapping[str, Task], log: Log,
               progress: bool) -> dict:
    """`run_experiment` in a local directory (an object-store root's local copy)."""
    # JAX only when a run starts (commands import this module early)
    import jax

    from s2jax.models.loading import load
    from s2jax.parallel.sharding import mesh_from_spec
    from s2jax.sampling import Sampler
    from s2jax.sampling.multihost import MultihostSampler

    d = resolve(config, run_dir, tasks=tasks)
    d = dataclasses.replace(d, train=dataclasses.replace(
        d.train, progress=progress and d.train.progress))  # steps, loss, tokens/s and ETA
    writer, _ = processes()
    # before the model loads: a second run is refused at once (process 0 locks and claims)
    with locked(run_dir, writer=writer, key=d.fingerprint):
        claim(run_dir, d.fingerprint, d.config, writer=writer)
        if (run_dir / "results.json").is_file():
            log(f"[{config.name}] done already: {run_dir / 'results.json'}")
            return json.loads((run_dir / "results.json").read_text())
        mesh = mesh_from_spec(config.mesh)

        def loaded(name: str, dtype: str | None):
            model, tokenizer = load(name, dtype=dtype, mesh=mesh)
            # across processes each samples its share of the prompts on a replica over its own
            # devices (no cross-host collective per token), while training uses the whole mesh
            kind = Sampler if jax.process_count() == 1 else MultihostSampler
            return model, tokenizer, kind(model, tokenizer, max_batch=config.max_batch,
                                          max_len=config.max_len, chat=config.chat,
                                          **({"mesh": mesh} if kind is Sampler else {}))

        model, tokenizer, sampler = loaded(config.model, config.dtype)
        teacher = (TeacherModels(*loaded(config.teacher_model, config.teacher_dtype))
                   if config.separate_teacher else None)
        if teacher:
            check_kd_tokenizers(config, tokenizer, teacher.tokenizer)
        return run_distillation(d, run_dir, model, tokenizer, sampler, mesh=mesh, log=log,
                                progress=progress, teacher=teacher)
