"""`s2jax demo`: System 2 distillation end to end on the shipped toy base model, on CPU.

Per task of the toy world, the same stage sequence as `s2jax run`
(`s2jax.run.pipeline.run_distillation`): evaluate System 1 and the task's System 2 method on
held-out inputs; sample the System 2 method N times on unlabeled inputs (labels stripped); filter
by vote; fine-tune System 1 on the kept final answers; evaluate the distilled System 1. One
sampler serves every task (its programs compile once). Artifacts under the output directory:

    results.json, results.png, table.md                  the paper-style table and chart
    <task>/                                              a run dir of `s2jax.run.pipeline`: eval/,
                                                         generations.jsonl, distill/, train/
"""

from __future__ import annotations

import dataclasses
import math
import time
from importlib import resources
from pathlib import Path

import datasets
import jax
import jax.numpy as jnp

from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import DEMO, check_dir, claim_dir
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig
from s2jax.methods import method
from s2jax.models.loading import identity, load
from s2jax.run.pipeline import Distillation, run_distillation
from s2jax.run.stages import stage_key
from s2jax.sampling import Sampler
from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED, TASKS, held_out
from s2jax.toy.report import verdict, write_report
from s2jax.train.config import CurriculumConfig, LoraConfig, TrainConfig

BASE_MODEL = "base_model"  # directory of the shipped model inside the s2jax.toy package


def base_model_dir() -> Path:
    """The shipped toy base model's directory."""
    return Path(str(resources.files("s2jax.toy").joinpath(BASE_MODEL)))


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; defaults give the README's table in a few minutes on 2 CPU cores."""

    tasks: tuple[str, ...] = tuple(TASKS)  # toy tasks to run, in order
    test: int = 100  # held-out labelled inputs per task (evaluation)
    unlabeled: int = 128  # unlabeled inputs per task that System 2 labels for distillation
    samples: int = 4  # N System 2 samples per unlabeled input (and per swapped input for BSM)
    temperature: float = 0.7  # System 2 sampling for the vote (self-consistency)
    top_k: int = 40  # System 2 sampling keeps the 40 likeliest tokens
    max_new_tokens: int = 128  # per stage
    finetune_steps: int = 80  # fine-tuning steps per task
    batch_size: int = 8  # fine-tuning rows per step (packed, 128 tokens each)
    learning_rate: float = 1e-3  # peak fine-tuning learning rate
    lora_rank: int = 0  # > 0: LoRA adapters of this rank on all seven projections, base frozen
    max_batch: int = 64  # sampler decode rows
    seed: int = 0  # System 2 sampling and fine-tuning
    shard_size: int = 128  # inputs per resumable shard (>= test and unlabeled: one shard each)
    # stepwise internalization: train on the kept samples' traces (distillation target "trace")
    # and remove them `tokens_per_stage` tokens per stage of `steps_per_stage` steps, evaluating
    # after every stage; 0 distils the final answers only (`finetune_steps` steps)
    tokens_per_stage: int = 0
    steps_per_stage: int = 40  # fine-tuning steps of each stage of the curriculum
    smoothing: float = 0.0  # removal smoothing lambda (the paper: 4); 0: off

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise S2JaxError(f"demo: unknown task(s) {unknown}; expected some of {list(TASKS)}")
        for field, most in (("test", MAX_TEST), ("unlabeled", MAX_UNLABELED)):
            if not 1 <= getattr(self, field) <= most:
                raise S2JaxError(f"demo {field}={getattr(self, field)}: expected 1..{most}")
        if self.samples < 1 or self.finetune_steps < 1:
            raise S2JaxError("demo samples and finetune_steps: expected >= 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise S2JaxError(f"demo learning_rate={self.learning_rate}: expected a finite "
                             "number > 0")
        if self.lora_rank < 0:
            raise S2JaxError(f"demo lora_rank={self.lora_rank}: expected >= 0 "
                             "(0: full fine-tuning)")
        if self.tokens_per_stage < 0 or self.steps_per_stage < 1:
            raise S2JaxError(f"demo tokens_per_stage={self.tokens_per_stage}, steps_per_stage="
                             f"{self.steps_per_stage}: expected >= 0 and >= 1")
        if not (math.isfinite(self.smoothing) and self.smoothing >= 0):
            raise S2JaxError(f"demo smoothing={self.smoothing}: expected a finite number >= 0")


STEPWISE_FIELDS = ("tokens_per_stage", "steps_per_stage", "smoothing")

# A smoke-test run: every stage and artifact, a few inputs and steps.
QUICK = DemoConfig(test=6, unlabeled=6, samples=2, finetune_steps=3, batch_size=8)


def _set_params(model, sampler, params: dict) -> None:
    """Puts `params` (host arrays) into the model and the sampler, without recompiling."""
    for name, value in params.items():
        model.param(name).set_value(jnp.asarray(value))
    sampler.set_params(model.params())


def task_distillation(name: str, config: DemoConfig, model_dir: Path):
    """One toy task's distillation, resolved for `s2jax.run.pipeline.run_distillation`."""
    t = TASKS[name]
    test, unlabeled = held_out(t, config.test, config.unlabeled)
    stepwise = config.tokens_per_stage > 0
    sizes = {k: v for k, v in dataclasses.asdict(config).items() if k != "tasks"
             and (stepwise or k not in STEPWISE_FIELDS)}  # answer-only runs keep their keys
    steps = config.steps_per_stage if stepwise else config.finetune_steps
    curriculum = CurriculumConfig(config.tokens_per_stage, config.steps_per_stage,
                                  smoothing=config.smoothing) if stepwise else CurriculumConfig()
    train = TrainConfig(steps=0 if stepwise else steps, batch_size=config.batch_size,
                        seq_len=256 if stepwise else 128, learning_rate=config.learning_rate,
                        warmup_steps=min(10, steps // 4), schedule="constant",
                        seed=config.seed, progress=True, export=True, log_every=1,
                        lora=LoraConfig(rank=config.lora_rank, alpha=2.0 * config.lora_rank),
                        curriculum=curriculum)
    return Distillation(
        name=name, program=t.method, system1=method("system1", t.task.system1), task=t.task,
        test_task=t.task, test=test, unlabeled=unlabeled,
        sampling=SamplingParams(n=config.samples, temperature=config.temperature,
                                top_k=config.top_k, max_new_tokens=config.max_new_tokens,
                                seed=config.seed),
        eval_sampling=SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens),
        distill=DistillConfig(filter=t.vote, target="trace" if stepwise else "answer"),
        train=train, model=str(model_dir),
        fingerprint=stage_key(demo=sizes, task=name, model=str(model_dir),
                              base=identity(model_dir)),
        config={"demo": sizes, "task": name, "model": str(model_dir)},
        perturb=t.vote == "perturbation", shard_size=config.shard_size, fail_on_empty=False)


def _task_row(name: str, d: Distillation, r: dict) -> dict:
    """One task's row of results.json, from its distillation and what the run returned."""
    rows = {row["system"]: row for row in r["rows"]}
    row = {
        "method": d.program.name, "filter": d.distill.filter,
        "built_to_distil": TASKS[name].distils,
        "system1": rows["system1"], "system2": rows["system2"],
        "distilled": rows.get("distilled"),
        "distill_set": {"unlabeled": len(d.unlabeled), "kept": r["distill"]["kept"],
                        "label_seconds": r["seconds"]["generate"]},
        "finetune_seconds": r["seconds"]["finetune_and_eval"],
        "warnings": r["warnings"],
        **({"curriculum": r["curriculum"]} if "curriculum" in r else {}),
    }
    return {**row, "verdict": verdict(row)}


def run_demo(out: str | Path, config: DemoConfig = DemoConfig(), *, model_dir: str | Path | None
             = None, progress: bool = True, log=print) -> dict:
    """Runs (or resumes) the demo and writes its artifacts under `out`.

    Args:
      out: output directory; each task's run dir is `out/<task>`.
      config: sizes.
      model_dir: base model (default: the shipped one).
      progress: tqdm bars on stderr.
      log: where the table and per-task lines go.

    Returns:
      The results (as written to results.json).
    """
    start = time.perf_counter()
    datasets.disable_progress_bars()  # parquet writes would add a bar per task
    # results.json, results.png and table.md are rewritten in place: only in a demo's own dir
    check_dir(out, "--out", DEMO)
    model_dir = Path(model_dir or base_model_dir())
    model, tokenizer = load(model_dir)
    out = claim_dir(out, "--out", DEMO)
    base = jax.device_get(model.params())
    # one sampler for every task: its programs compile once and take each task's weights
    sampler = Sampler(model, tokenizer, max_batch=config.max_batch, max_len=512)
    results = {"model": str(model_dir), "config": dataclasses.asdict(config), "tasks": {}}
    for name in config.tasks:
        d = task_distillation(name, config, model_dir)
        d = dataclasses.replace(d, train=dataclasses.replace(d.train, progress=progress))
        _set_params(model, sampler, base)
        r = run_distillation(d, out / name, model, tokenizer, sampler, log=lambda _: None,
                             progress=progress)
        row = results["tasks"][name] = _task_row(name, d, r)
        distilled = row["distilled"]["accuracy"] if row["distilled"] else float("nan")
        log(f"{name}: System 1 {row['system1']['accuracy']:.1f}%  System 2 "
            f"{row['system2']['accuracy']:.1f}%  distilled {distilled:.1f}%  ({row['verdict']})")
        for w in r["warnings"]:
            log(f"{name}: WARNING (non-result?): {w}")
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["sampler_compiles"] = sampler.compile_count
    write_json(out / "results.json", results)
    log(write_report(out, results))
    return results
