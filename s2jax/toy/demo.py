"""`s2jax demo`: System 2 distillation end to end on the shipped toy base model, on CPU.

Per task of the toy world: evaluate System 1 and the task's System 2 method on held-out inputs;
sample the System 2 method N times on unlabeled inputs (`s2jax.methods.records`); filter by
vote (`s2jax.distill`, which uses `s2jax.vote`); fine-tune System 1 on the kept final answers
(`s2jax.train.finetune`); evaluate the distilled System 1. Artifacts under the output directory:

    results.json, results.png, table.md                  the paper-style table and chart
    <task>/generations.jsonl, <task>/distill/...        System 2 samples and the distillation set
    <task>/train/ (metrics.jsonl, summary.json, ...)    the fine-tuning run
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from s2jax.text_generator import Prompt, Sample, SamplingParams
from s2jax.toy.world import TASKS

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
    top_k: int = 40
    max_new_tokens: int = 128  # per stage
    finetune_steps: int = 80  # fine-tuning steps per task
    batch_size: int = 8  # fine-tuning rows per step (packed, 128 tokens each)
    learning_rate: float = 1e-3
    max_batch: int = 64  # sampler decode rows
    seed: int = 0

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            from s2jax.errors import S2JaxError

            raise S2JaxError(f"demo: unknown task(s) {unknown}; expected some of {list(TASKS)}")


# A smoke-test run: every stage and artifact, a few inputs and steps.
QUICK = DemoConfig(test=6, unlabeled=6, samples=2, finetune_steps=3, batch_size=8)


class _Bar:
    """A `TextGenerator` around the sampler that drives one tqdm bar per call."""

    def __init__(self, sampler, label: str, enabled: bool):
        self.sampler, self.label, self.enabled, self.calls = sampler, label, enabled, 0

    def __call__(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Sample]]:
        from tqdm import tqdm

        self.calls += 1
        with tqdm(total=len(prompts), desc=f"{self.label} [stage {self.calls}]", unit="prompt",
                  leave=False, disable=not self.enabled, dynamic_ncols=True) as bar:
            def progress(prompts_done: int, tokens: int) -> None:
                bar.update(prompts_done)
                bar.set_postfix(tokens=tokens, refresh=False)
            return self.sampler(prompts, params, progress=progress)


def _set_params(model, sampler, params: dict) -> None:
    """Puts `params` (host arrays) into the model and the sampler, without recompiling."""
    import jax.numpy as jnp

    for name, value in params.items():
        model.param(name).set_value(jnp.asarray(value))
    sampler.set_params(model.params())


def run_demo(out: str | Path, config: DemoConfig = DemoConfig(), *, model_dir: str | Path | None
             = None, progress: bool = True, log=print) -> dict:
    """Runs the demo and writes its artifacts under `out`.

    Args:
      out: output directory.
      config: sizes.
      model_dir: base model (default: the shipped one).
      progress: tqdm bars on stderr.
      log: where the table and per-task lines go.

    Returns:
      The results (as written to results.json).
    """
    import datasets
    import jax

    import s2jax
    from s2jax.atomic import write_json, write_jsonl
    from s2jax.distill import DistillConfig, build_distill_set, provenance, write_distill_set
    from s2jax.evaluate import evaluate
    from s2jax.methods import method
    from s2jax.methods.records import generate_records
    from s2jax.sampling import Sampler
    from s2jax.toy.report import verdict, write_report
    from s2jax.toy.world import held_out
    from s2jax.train import TrainConfig, finetune

    start = time.perf_counter()
    datasets.disable_progress_bars()  # parquet writes would add a bar per task
    out = Path(out)
    model_dir = Path(model_dir or base_model_dir())
    model, tokenizer = s2jax.load(model_dir)
    base = jax.device_get(model.params())
    sampler = Sampler(model, tokenizer, max_batch=config.max_batch, max_len=512)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens)
    sample = SamplingParams(n=config.samples, temperature=config.temperature, top_k=config.top_k,
                            max_new_tokens=config.max_new_tokens, seed=config.seed)
    results = {"model": str(model_dir), "config": dataclasses.asdict(config), "tasks": {}}
    for name in config.tasks:
        t = TASKS[name]
        task_dir = out / name
        test, unlabeled = held_out(t, config.test, config.unlabeled)
        system1 = method("system1", t.task.system1)
        _set_params(model, sampler, base)
        gen = lambda label, name=name: _Bar(sampler, f"{name}: {label}", progress)
        s1 = evaluate("system1", system1, t.task, test, gen("System 1"), greedy)
        s2 = evaluate("system2", t.method, t.task, test, gen(f"System 2 ({t.method.name})"),
                      greedy)

        t0 = time.perf_counter()
        perturbation = t.task.perturbation if t.vote == "perturbation" else None
        records = generate_records(t.method, unlabeled, gen(f"label x{config.samples}"), sample,
                                   task=name, perturbation=perturbation)
        label_seconds = time.perf_counter() - t0
        write_jsonl(task_dir / "generations.jsonl", records)
        dconfig = DistillConfig(filter=t.vote)
        dset = build_distill_set(records, t.task, dconfig)
        write_distill_set(task_dir / "distill", dset, provenance(
            records, t.task, dconfig, dset, generations=str(task_dir / "generations.jsonl"),
            model=str(model_dir), sampling=dataclasses.asdict(sample)))

        t0 = time.perf_counter()
        distilled = None
        if dset.examples:
            tconfig = TrainConfig(steps=config.finetune_steps, batch_size=config.batch_size,
                                  seq_len=128, learning_rate=config.learning_rate,
                                  warmup_steps=min(10, config.finetune_steps // 4),
                                  schedule="constant", seed=config.seed, progress=progress,
                                  export=False, log_every=1)
            finetune(model, tokenizer, dset.examples, tconfig, task_dir / "train")
            _set_params(model, sampler, jax.device_get(model.params()))
            distilled = evaluate("distilled", system1, t.task, test, gen("distilled System 1"),
                                 greedy)
        train_seconds = time.perf_counter() - t0
        row = {
            "method": t.method.name, "filter": t.vote, "built_to_distil": t.distils,
            "system1": s1.to_json(), "system2": s2.to_json(),
            "distilled": distilled.to_json() if distilled else None,
            "distill_set": {"unlabeled": len(unlabeled), "kept": dset.stats.kept,
                            "label_seconds": round(label_seconds, 2)},
            "finetune_seconds": round(train_seconds, 2),
        }
        row["verdict"] = verdict(row)
        results["tasks"][name] = row
        log(f"{name}: System 1 {s1.accuracy:.1f}%  System 2 {s2.accuracy:.1f}%  distilled "
            f"{distilled.accuracy if distilled else float('nan'):.1f}%  ({row['verdict']})")
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["sampler_compiles"] = sampler.compile_count
    write_json(out / "results.json", results)
    log(write_report(out, results))
    return results
