"""One System 2 distillation run as resumable stages, each leaving an artifact in `run_dir`.

  config.json         the resolved experiment config (a rerun must match it)
  eval_base.json      System 1 and System 2 of the base model on the test split
  generations.jsonl   System 2 with N samples on the unlabeled inputs (labels stripped)
  distill/            the label-free filter's System 1 set: train.parquet, provenance, stats
  train/              checkpoints, metrics, and the exported model/ (HF format)
  results.json        the table: base System 1, base System 2, distilled System 1

A stage whose artifact exists is skipped, so a killed run resumes where it stopped (training
resumes from its last orbax checkpoint). Every artifact is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from s2jax.atomic import write_json, write_jsonl
from s2jax.distill import PARQUET, build_distill_set, provenance, write_distill_set
from s2jax.errors import S2JaxError
from s2jax.evaluate import EvalResult, evaluate
from s2jax.experiment import DataConfig, ExperimentConfig
from s2jax.methods.programs import SYSTEM1, method
from s2jax.methods.records import read_generations
from s2jax.tasks import TASKS, load_examples
from s2jax.tasks.task import Example, Task

Log = Callable[[str], None]


def task_examples(task: Task, data: DataConfig) -> list[Example]:
    """A task's examples per a `DataConfig` (synthetic or loaded)."""
    if data.synthetic:
        if task.synthesize is None:
            raise S2JaxError(f"data.synthetic: task {task.name} has no generator; set a source")
        return task.synthesize(data.synthetic, data.seed)
    return load_examples(task, data.source, split=data.split, limit=data.limit, seed=data.seed)


def _write(write, path: Path, obj) -> None:
    """Writes an artifact from process 0 only; every process waits until it is there."""
    import jax

    from s2jax.distributed import is_writer

    if is_writer():
        write(path, obj)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"s2jax wrote {path.name}")


def _check_run_dir(run_dir: Path, config: ExperimentConfig) -> None:
    path = run_dir / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != config.fingerprint():
            raise S2JaxError(f"{path}: the run dir holds a run of a different config; "
                             "use a new --run-dir (or delete it to start over)")
        return
    _write(write_json, path, {"fingerprint": config.fingerprint(), "config": config.to_json()})


def _sampler(model, tokenizer, config: ExperimentConfig, mesh):
    from s2jax.sampling import Sampler

    return Sampler(model, tokenizer, mesh=mesh, max_batch=config.max_batch,
                   max_len=config.max_len, chat=config.chat)


def run_experiment(config: ExperimentConfig, run_dir: str | Path, *,
                   tasks: Mapping[str, Task] = TASKS, log: Log = print) -> dict:
    """Runs (or resumes) every stage; returns the contents of results.json.

    Args:
      config: the experiment.
      run_dir: where the artifacts go.
      tasks: where `config.task` is looked up (the toy world passes its own tasks).
      log: where progress lines go.

    Returns:
      {"config": ..., "rows": [EvalResult json for system1, system2, distilled], "distill": ...}
    """
    import s2jax
    from s2jax.sharding import make_mesh, parse_mesh
    from s2jax.train.loop import finetune

    if config.task not in tasks:
        raise S2JaxError(f"config task {config.task!r}: expected one of {', '.join(tasks)}")
    task = tasks[config.task]
    if (config.test_task or config.task) not in tasks:
        raise S2JaxError(f"config test_task {config.test_task!r}: expected one of "
                         f"{', '.join(tasks)}")
    test_task = tasks[config.test_task or config.task]
    program, system1 = method(config.method, task.system1), method(SYSTEM1, task.system1)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_dir(run_dir, config)
    if (run_dir / "results.json").is_file():
        log(f"[{config.name}] done already: {run_dir / 'results.json'}")
        return json.loads((run_dir / "results.json").read_text())
    mesh = make_mesh(**parse_mesh(config.mesh)) if config.mesh else None
    model, tokenizer = s2jax.load(config.model, dtype=config.dtype, mesh=mesh)
    test = task_examples(test_task, config.test)

    sampler = None  # built on first use, then shared by every stage that samples
    base_path = run_dir / "eval_base.json"
    if not base_path.is_file():
        sampler = _sampler(model, tokenizer, config, mesh)
        rows = [evaluate(name, prog, test_task, test, sampler, config.eval_sampling,
                         chat=config.chat)
                for name, prog in (("system1", system1), ("system2", program))]
        _write(write_json, base_path, [r.to_json() for r in rows])
    base = [EvalResult(**r) for r in json.loads(base_path.read_text())]
    for r in base:
        log(f"[{config.name}] base {r.system}: {r.accuracy:.1f}% at "
            f"{r.tokens_per_answer:.1f} tokens/answer")

    gen_path = run_dir / "generations.jsonl"
    if not gen_path.is_file():
        # System 2 distillation is unsupervised: labels are stripped before generation
        unlabeled = [dataclasses.replace(ex, gold=()) for ex in
                     task_examples(task, config.unlabeled)]
        sampler = sampler or _sampler(model, tokenizer, config, mesh)
        records = _generate(program, task, unlabeled, sampler, config)
        _write(write_jsonl, gen_path, records)

    distill_dir = run_dir / "distill"
    if not (distill_dir / PARQUET).is_file():
        records = read_generations(gen_path)
        dset = build_distill_set(records, task, config.distill)
        prov = provenance(records, task, config.distill, dset, generations=str(gen_path),
                          model=config.model, sampling=dataclasses.asdict(config.sampling))
        _write(lambda d, args: write_distill_set(d, *args), distill_dir, (dset, prov))
    stats = json.loads((distill_dir / "vote_stats.json").read_text())
    log(f"[{config.name}] distillation set: kept {stats['kept']} of {stats['inputs']} inputs")

    model_dir = run_dir / "train" / "model"
    if not (model_dir / "config.json").is_file():
        import datasets

        examples = datasets.Dataset.from_parquet(str(distill_dir / PARQUET)).to_list()
        if not examples:
            raise S2JaxError(f"{distill_dir / PARQUET}: the filter kept no examples; lower "
                             "distill.vote.threshold or draw more samples")
        finetune(model, tokenizer, examples, dataclasses.replace(config.train, export=True),
                 run_dir / "train", mesh=mesh)
    distilled, _ = s2jax.load(model_dir, dtype=config.dtype, mesh=mesh)
    sampler = sampler or _sampler(distilled, tokenizer, config, mesh)
    sampler.set_params(distilled.params())  # same shapes: the compiled programs are reused
    final = evaluate("distilled", system1, test_task, test, sampler, config.eval_sampling,
                     chat=config.chat)
    results = {"name": config.name, "task": task.name, "method": program.name,
               "rows": [r.to_json() for r in (*base, final)], "distill": stats}
    _write(write_json, run_dir / "results.json", results)
    log(f"[{config.name}] distilled system1: {final.accuracy:.1f}% at "
        f"{final.tokens_per_answer:.1f} tokens/answer")
    return results


def _generate(program, task: Task, examples: list[Example], sampler, config: ExperimentConfig):
    from s2jax.methods.records import generate_records

    if config.perturb and task.perturbation is None:
        raise S2JaxError(f"config perturb: task {task.name} has no perturbation")
    return generate_records(program, examples, sampler, config.sampling, task=task.name,
                            perturbation=task.perturbation if config.perturb else None,
                            usc=config.usc, chat=config.chat)
