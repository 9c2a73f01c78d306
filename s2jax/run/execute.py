"""Running one stage of a sweep into its partial directory (`s2jax.run.store`).

Each kind calls the same stage function as `s2jax run` (`s2jax.run.stages`): evaluation and
System 2 sampling shard by shard (a killed worker's successor resumes at the first unfinished
shard), fine-tuning from its last checkpoint. What may differ between two runs of a stage
(timings, shard indices, training logs, checkpoints) goes to log/ or is dropped, so the rest of
a committed stage is a function of its spec.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.distill.dataset import PARQUET
from s2jax.run.config import ExperimentConfig
from s2jax.run.graph import Graph, Node
from s2jax.run.pipeline import check_kd_tokenizers
from s2jax.run.protocol import apply_control, with_fields
from s2jax.run.selection import SPLIT, choose
from s2jax.run.stages import distill_stage, evaluate_stage, finetune_stage, generate_stage
from s2jax.run.store import LOG, StageStore, move_into_log
from s2jax.train.data import read_examples

Log = Callable[[str], None]
SET = "set"  # a distill stage's distillation set directory
EMPTY = "empty.json"  # a finetune stage whose filter kept nothing: no model
EXPORTS = ("model", "adapter")  # a finetune stage's product: what its export wrote


class Engine:
    """The model a worker holds: loaded once per (model, dtype, mesh, sampler settings), with
    its base weights kept to restore after a fine-tune or a distilled model's evaluation."""

    def __init__(self, *, progress: bool = False):
        self.progress = progress
        self.key = None
        self.model = self.tokenizer = self.sampler = self.mesh = None
        self.base: dict = {}
        self.holds = "base"  # which weights the model and sampler hold now

    @staticmethod
    def loaded(config: ExperimentConfig) -> tuple:
        """What decides the model and sampler `get` holds for `config`."""
        return (config.model, config.dtype, config.mesh, config.max_batch, config.max_len,
                config.chat)

    def get(self, config: ExperimentConfig):
        key = self.loaded(config)
        if key != self.key:
            # JAX only when a stage needs the model (planning a sweep imports this module)
            from s2jax.models.loading import load
            from s2jax.parallel.sharding import mesh_from_spec
            from s2jax.sampling import Sampler

            self.model = self.sampler = None  # the previous model's memory goes first
            self.mesh = mesh_from_spec(config.mesh)
            self.model, self.tokenizer = load(config.model, dtype=config.dtype, mesh=self.mesh)
            self.sampler = Sampler(self.model, self.tokenizer, mesh=self.mesh,
                                   max_batch=config.max_batch, max_len=config.max_len,
                                   chat=config.chat)
            self.base, self.key, self.holds = dict(self.model.params()), key, "base"
        return self

    def use(self, config: ExperimentConfig, weights: Path | None = None) -> Engine:
        """The engine holding the base weights, or those of the exported model `weights`."""
        from s2jax.models.loading import load  # JAX: as in `get`

        if (self.key == self.loaded(config) and self.base
                and any(v.is_deleted() for v in self.base.values())):
            # a fine-tune released the base buffers: read the weights again into the model and
            # sampler held, whose traced and compiled programs stay (a new sampler retraces
            # them), the tuned weights freed first (one copy of the model at a time)
            for name in self.model.params():
                self.model.param(name).get_value().delete()
            self.base = dict(load(config.model, dtype=config.dtype, mesh=self.mesh)[0].params())
            self.holds = None
        self.get(config)
        want = "base" if weights is None else str(weights)
        if self.holds != want:
            params = self.base
            if weights is not None:
                params = load(weights, dtype=config.dtype, mesh=self.mesh)[0].params()
            for name, value in params.items():
                self.model.param(name).set_value(value)
            self.sampler.set_params(dict(params))
            self.holds = want
        return self


def _seconds(work: Path, seconds: float) -> None:
    write_json(work / LOG / "timing.json", {"seconds": round(seconds, 3)})


def run_eval(node: Node, work: Path, store: StageStore, engine: Engine, log: Log) -> None:
    job, config = node.job, node.job["config"]
    tuned = node.spec["model"].get("finetune")
    if tuned and (store.path(tuned) / EMPTY).is_file():
        write_json(work / EMPTY, {"reason": f"{tuned} has no model: its filter kept nothing"})
        return
    engine.use(config, store.path(tuned) / "model" if tuned else None)
    row = evaluate_stage("eval", job["program"], job["task"], job["examples"], engine.sampler,
                         job["params"], path=work / "rows.jsonl", key=node.id,
                         shard_size=config.shard_size, chat=config.chat,
                         progress=engine.progress)
    move_into_log(work, ["rows.jsonl.shards"])
    _seconds(work, row.seconds)
    log(f"{node.id}: {row.accuracy:.1f}% at {row.tokens_per_answer:.1f} tokens/answer "
        f"({job['task'].name}, {job['program'].name}, {row.examples} inputs)")


def run_generate(node: Node, work: Path, store: StageStore, engine: Engine, log: Log) -> None:
    job, config = node.job, node.job["config"]
    engine.use(config)
    t0 = time.perf_counter()
    generate_stage(job["program"], job["task"], job["examples"], engine.sampler, job["params"],
                   path=work / "generations.jsonl", key=node.id, shard_size=config.shard_size,
                   perturb=config.perturb, usc=config.usc, chat=config.chat,
                   progress=engine.progress)
    move_into_log(work, ["generations.jsonl.shards"])
    _seconds(work, time.perf_counter() - t0)
    log(f"{node.id}: {len(job['examples'])} inputs x {job['params'].n} samples")


def _first_samples(record: dict, n: int) -> dict:
    """A record as an N=n run would have written it (samples are keyed by index)."""
    out = {**record, "samples": record["samples"][:n]}
    if "perturbed" in record:
        out["perturbed"] = {**record["perturbed"],
                            "samples": record["perturbed"]["samples"][:n]}
    return out


def run_distill(node: Node, work: Path, store: StageStore, engine: Engine, log: Log) -> None:
    job, config, d = node.job, node.job["config"], node.job["d"]
    gen, = node.deps
    keep = set(job["keep"])
    records = [_first_samples(r, job["n"]) for r in store.rows(gen, "generations.jsonl")
               if r["id"] in keep]
    inputs = {ex.id: ex for ex in job["unlabeled"]}
    if config.control == "own_unbiased":  # trained on the biased prompt, not the bare one
        records = with_fields(records, {i: ex.fields for i, ex in inputs.items()})
    retarget = functools.partial(apply_control, control=config.control, task=d.task,
                                 gold={i: ex.gold for i, ex in inputs.items()},
                                 seed=config.sampling.seed)
    sampling = dataclasses.asdict(dataclasses.replace(d.sampling, n=job["n"]))  # the teacher's
    dset, warnings = distill_stage(records, d.task, config.distill, work / SET,
                                   generations=f"stages/{gen}/generations.jsonl",
                                   model=d.teacher or d.model, sampling=sampling,
                                   retarget=retarget, context=job["context"])
    write_json(work / "distill.json", {"stats": dset.stats.to_json(), "warnings": warnings})
    log(f"{node.id}: kept {dset.stats.kept} of {dset.stats.inputs} inputs")


def kd_teacher(config: ExperimentConfig, engine: Engine) -> tuple:
    """(teacher model, its tokenizer) for a finetune stage: with train.kd and a teacher apart
    from the student, loaded on the engine's mesh for this stage; else (None, None), which
    `finetune_stage` reads as the student's own loaded base weights (or no teacher)."""
    if not (config.train.kd.enabled and config.separate_teacher):
        return None, None
    from s2jax.models.loading import load  # JAX: as in `Engine.get`

    teacher, tokenizer = load(config.teacher_model, dtype=config.teacher_dtype,
                              mesh=engine.mesh)
    check_kd_tokenizers(config, engine.tokenizer, tokenizer)
    return teacher, tokenizer


def run_finetune(node: Node, work: Path, store: StageStore, engine: Engine, log: Log) -> None:
    config, d = node.job["config"], node.job["d"]
    dist, = node.deps
    parquet = store.path(dist) / SET / PARQUET
    if not parquet.is_file():
        write_json(work / EMPTY, {"reason": f"{dist}: the filter kept nothing"})
        return
    t0 = time.perf_counter()
    # A worker killed after moving the finished export out of train/ left its product in place:
    # the resumed stage keeps it and moves what is left (moving onto it would fail; retraining
    # would redo the whole fine-tune for the same weights).
    if not any((work / part).exists() for part in EXPORTS):
        engine.use(config)
        teacher, teacher_tokenizer = kd_teacher(config, engine)
        train = dataclasses.replace(d.train, progress=engine.progress)
        try:
            finetune_stage(engine.model, engine.tokenizer, read_examples(parquet), train,
                           work / "train", mesh=engine.mesh, teacher=teacher,
                           teacher_tokenizer=teacher_tokenizer, final_checkpoint=False)
        finally:
            engine.holds = "tuned"  # the model's weights were replaced (or half replaced)
    for part in EXPORTS:
        if (work / "train" / part).exists() and not (work / part).exists():
            (work / "train" / part).rename(work / part)
    # only for resuming (the stage's export is its product: no checkpoint after the last step)
    shutil.rmtree(work / "train" / "checkpoints", ignore_errors=True)
    move_into_log(work, ["train"])
    _seconds(work, time.perf_counter() - t0)
    log(f"{node.id}: fine-tuned on {dist}")


def selection_candidates(graph: Graph, store: StageStore) -> dict[str, list[dict]]:
    """Each arm's distilled validation rows (none where its filter kept nothing)."""
    return {arm: [r for f in roles.folds for r in store.rows(f.evals[SPLIT])]
            if not (store.path(roles.folds[0].evals[SPLIT]) / EMPTY).is_file() else []
            for arm, roles in graph.arms.items()}


def run_select(node: Node, work: Path, store: StageStore, graph: Graph, *,
               after_test: list[str]) -> dict:
    record = choose(graph.selection, selection_candidates(graph, store), node.spec["configs"])
    record["after_test"] = bool(after_test)
    if after_test:
        record["test_stages_before"] = after_test
    write_json(work / "selection.json", record)
    return record


RUNNERS = {"eval": run_eval, "generate": run_generate, "distill": run_distill,
           "finetune": run_finetune}


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
