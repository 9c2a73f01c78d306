"""A sweep's stages, each keyed by what determines its artifact, and which arms share them.

Every arm of a sweep is the stage sequence of one distillation (evaluate the base model,
sample System 2, filter, fine-tune, evaluate the result). A stage is identified by a hash of
only the settings and input artifacts that change its output:

    eval       the model (the base checkpoint, or a finetune stage), the prompt program, the
               task, the labelled inputs' content, evaluation sampling, chat and max_len
    generate   the System 2 model (the teacher's, which is the student's unless a teacher
               section names another), the program, the task, the unlabeled inputs' content
               (labels stripped), sampling without N, perturb/usc, chat and max_len; the id
               names N
    distill    the samples it reads (generate's id less N), N, the filter, the control, with
               train.kd the teacher's context and, for a fold, which inputs it keeps
    finetune   the distill stage, every train setting that changes the weights (train.kd
               among them), the model, the mesh and, with train.kd, the frozen teacher's model
    select     the rule and every candidate's validation evaluation

So arms that differ only in training settings share the evaluation of the base model, the
System 2 samples and the filter's output, and arms with one teacher and different students
share the teacher's samples and its System 2 evaluation. A sample's random key depends only
on (seed, prompt, sample index), so one generate stage with the largest N of a sweep serves
every smaller N: an arm with N=4 reads the first 4 of 16 samples. Settings that do not change
outputs (the run's name, progress bars, shard size, max_batch, checkpoint cadence) are left out
of every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.hashing import json_hash
from s2jax.methods.catalog import METHOD_NAMES, method
from s2jax.methods.program import Program
from s2jax.models.fetch import resolve as fetched_model
from s2jax.run.config import ExperimentConfig
from s2jax.run.pipeline import Distillation, resolve, resolve_task, task_examples
from s2jax.run.protocol import distilled_inputs, fold_split, unbiased
from s2jax.run.selection import SPLIT, Selection
from s2jax.tasks import TASKS
from s2jax.tasks.task import Example, Task

TEST = "test"
# train settings that do not change the fine-tuned weights
UNKEYED_TRAIN = ("progress", "export", "log_every", "eval_every", "checkpoint_every",
                 "keep_checkpoints")
# the order stages are taken in: validation before selection before any test evaluation
PHASES = ("eval_base_validation", "generate", "distill", "finetune", "eval_distilled_validation",
          "select", "eval_base_test", "eval_distilled_test", "retention")


def examples_digest(examples: Sequence[Example], *, labels: bool = True) -> str:
    """The content of a list of inputs (ids, fields, and gold unless `labels` is False)."""
    return json_hash([[ex.id, ex.fields, list(ex.gold) if labels else []] for ex in examples])


def program_spec(program: Program) -> dict:
    return {"name": program.name, "stages": [
        [s.name, s.template, s.system, s.max_new_tokens,
         s.fan_out.over if s.fan_out else None, getattr(s.clean, "__name__", None)]
        for s in program.stages]}


@dataclasses.dataclass
class Node:
    """One stage of the sweep.

    Attributes:
      kind: "eval", "generate", "distill", "finetune" or "select".
      id: `<kind>-<hash of spec>` (generate: `generate-<hash without N>-n<N>`).
      spec: what determines the artifact (written to its stage.json).
      deps: stages that must be committed first (inputs, and the selection before a test).
      phase: one of PHASES (the order workers take stages in).
      job: what the executor needs to run it (resolved objects; not hashed).
      label: what it is, for the plan ("base system2 on test", ...).
    """

    kind: str
    id: str
    spec: dict
    deps: tuple[str, ...]
    phase: str
    job: dict
    label: str = ""


@dataclasses.dataclass
class FoldRoles:
    """One fine-tuned model of an arm (an arm without folds has one)."""

    generate: str
    distill: str
    finetune: str
    test_ids: list[str]  # the test inputs this model answers
    evals: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> eval id


@dataclasses.dataclass
class ArmRoles:
    """Which stage plays which part in one arm."""

    name: str
    config: ExperimentConfig
    d: Distillation
    base: dict[tuple[str, str], str]  # (system, split) -> eval id
    folds: list[FoldRoles]
    retention: dict[str, dict[str, str]]  # suite -> {"base": id, "distilled": id}
    splits: dict[str, list[Example]]  # split -> its inputs, in order


class Graph:
    """Every stage of a sweep, deduplicated, and each arm's roles."""

    def __init__(self, selection: Selection | None = None):
        self.nodes: dict[str, Node] = {}
        self.arms: dict[str, ArmRoles] = {}
        self.selection = selection
        self.select_id: str | None = None
        self.uses: dict[str, list[str]] = {}  # stage id -> arms that use it

    def add(self, node: Node, arm: str) -> str:
        self.nodes.setdefault(node.id, node)
        users = self.uses.setdefault(node.id, [])
        if arm not in users:
            users.append(arm)
        return node.id

    def ordered(self) -> list[Node]:
        """Stages by phase, then in the order the arms first asked for them."""
        return sorted(self.nodes.values(), key=lambda n: PHASES.index(n.phase))



def _model_spec(name: str, dtype: str | None) -> dict:
    return {"base": str(Path(fetched_model(name)).resolve()), "dtype": dtype}


def model_spec(config: ExperimentConfig, d: Distillation) -> dict:
    """The student's base model."""
    return _model_spec(d.model, config.dtype)


def teacher_spec(config: ExperimentConfig) -> dict:
    """The teacher's model: the student's (the same spec) unless a teacher section names
    another checkpoint or dtype."""
    return _model_spec(config.teacher_model, config.teacher_dtype)


def as_teacher(config: ExperimentConfig) -> ExperimentConfig:
    """`config` with the teacher's model loaded in the student's place: what the stages that
    run System 2 (its base evaluation and the samples) load."""
    if not config.separate_teacher:
        return config
    return dataclasses.replace(config, model=config.teacher_model, dtype=config.teacher_dtype)


def _teacher_name(config: ExperimentConfig) -> str:
    return Path(config.teacher_model).name


def engine_spec(config: ExperimentConfig) -> dict:
    return {"chat": config.chat, "max_len": config.max_len}


def eval_node(graph: Graph, arm: str, *, model: dict, deps: tuple[str, ...], program: Program,
              task: Task, examples: Sequence[Example], config: ExperimentConfig,
              phase: str, label: str) -> str:
    spec = {"model": model, "program": program_spec(program), "task": task.name,
            "inputs": examples_digest(examples), "sampling": dataclasses.asdict(
                config.eval_sampling), "engine": engine_spec(config)}
    job = {"program": program, "task": task, "examples": list(examples), "config": config,
           "params": config.eval_sampling}
    node = Node("eval", f"eval-{json_hash(spec)}", spec, deps, phase, job, label)
    return graph.add(node, arm)


def resolve_arm(name: str, config: ExperimentConfig, arm_dir: Path,
                tasks: Mapping[str, Task]) -> tuple[Distillation, dict[str, list[Example]]]:
    """The arm resolved (every check of `s2jax run`), and its labelled splits."""
    if config.cross_fit.folds and (config.validation is not None or config.retention):
        raise S2JaxError(f"arm {name}: cross_fit with validation or retention is not supported "
                         "yet (expected one of them)")
    # with folds, System 2 runs on the pool: `unlabeled` is the pool (labels are stripped)
    probe = (dataclasses.replace(config, unlabeled=config.test) if config.cross_fit.folds
             else config)
    d = resolve(probe, arm_dir, tasks=tasks)
    splits = {TEST: list(d.test)}
    if config.validation is not None:
        splits[SPLIT] = task_examples(d.test_task, config.validation, "validation")
        if not splits[SPLIT]:
            raise S2JaxError(f"arm {name}: config validation has no examples")
        clash = {ex.id for ex in splits[SPLIT]} & {ex.id for ex in d.test}
        if clash:
            raise S2JaxError(f"arm {name}: validation and test share input "
                             f"{sorted(clash)[0]!r} (expected disjoint splits)")
    return d, splits


def _generate(graph: Graph, arm: str, config: ExperimentConfig, d: Distillation,
              inputs: Sequence[Example], n_for: Callable[[str, int], int]) -> tuple[str, str]:
    """(generate stage id, its family: the id less N) of an arm's System 2 samples."""
    program, examples = d.program, list(inputs)
    if config.control in ("system1", "own_unbiased"):
        program = d.system1
    if config.control == "own_unbiased":
        examples = unbiased(examples, d.task)
    sampling = dataclasses.asdict(d.sampling)  # the teacher's
    n = sampling.pop("n")
    family_spec = {"model": teacher_spec(config), "program": program_spec(program),
                   "task": d.task.name, "inputs": examples_digest(examples, labels=False),
                   "sampling": sampling, "perturb": config.perturb, "usc": config.usc,
                   "engine": engine_spec(config)}
    if config.usc:  # the USC reply reads all N samples: no prefix of it is a smaller N's
        family_spec["n"] = n
    family = json_hash(family_spec)
    n_store = n_for(family, n)
    job = {"program": program, "task": d.task, "examples": examples,
           "config": as_teacher(config), "params": dataclasses.replace(d.sampling, n=n_store),
           "d": d}
    label = f"{program.name} x{n_store} on {len(examples)} inputs"
    if config.separate_teacher:
        label += f" by teacher {_teacher_name(config)}"
    node = Node("generate", f"generate-{family}-n{n_store}", {**family_spec, "n": n_store},
                (), "generate", job, label)
    return graph.add(node, arm), family


def _fold(graph: Graph, arm: str, config: ExperimentConfig, d: Distillation, *,
          unlabeled: Sequence[Example], test: Sequence[Example], fold: int | None,
          n_for: Callable[[str, int], int]) -> FoldRoles:
    """The generate -> distill -> finetune -> eval chain of one fine-tuned model."""
    pool = (distilled_inputs(d.test, config.cross_fit.distil_on) if fold is not None
            else unlabeled)
    gen, family = _generate(graph, arm, config, d, pool, n_for)
    keep = [ex.id for ex in unlabeled]
    n = d.sampling.n
    spec = {"samples": family, "n": n, "filter": dataclasses.asdict(
        config.distill), "control": config.control,
        "subset": json_hash(keep) if fold is not None else None}
    # train.kd: each example also carries the teacher's own prompt for its kept sample, that
    # of the program that made the samples (the family names it)
    context = graph.nodes[gen].job["program"] if d.teacher_context else None
    if context is not None:
        spec["teacher_context"] = context.name
    if config.control == "gold":
        spec["gold"] = examples_digest(unlabeled)
    if config.control == "own_unbiased":  # sampled on the bare inputs, trained on these
        spec["prompts"] = examples_digest(unlabeled, labels=False)
    if config.control == "shuffled":
        spec["seed"] = config.sampling.seed
    job = {"d": d, "config": config, "keep": keep, "n": n, "unlabeled": list(unlabeled),
           "context": context}
    what = f"{config.distill.filter} {config.distill.vote.threshold:g}, N={n}"
    if config.control:
        what += f", control {config.control}"
    if fold is not None:
        what += f", fold {fold}"
    dist = graph.add(Node("distill", f"distill-{json_hash(spec)}", spec, (gen,), "distill", job,
                          what), arm)
    tune = _finetune(graph, arm, config, d, dist)
    return FoldRoles(gen, dist, tune, [ex.id for ex in test])


def _finetune(graph: Graph, arm: str, config: ExperimentConfig, d: Distillation,
              dist: str) -> str:
    """The finetune stage on the distill stage `dist`; with train.kd it names its teacher."""
    train = {k: v for k, v in dataclasses.asdict(d.train).items() if k not in UNKEYED_TRAIN}
    spec = {"distill": dist, "train": train, "model": model_spec(config, d), "mesh": config.mesh}
    t = config.train
    what = f"{t.steps} steps" if t.steps else f"{t.epochs:g} epochs"
    what += f", lr {t.learning_rate:g}" + (f", LoRA r{t.lora.rank}" if t.lora.rank else "")
    if t.kd.enabled:  # the frozen teacher runs in every step: its weights change the result
        spec["teacher"] = teacher_spec(config)
        what += f", KD {t.kd.divergence} from " + (
            f"teacher {_teacher_name(config)}" if config.separate_teacher else "the base")
    return graph.add(Node("finetune", f"finetune-{json_hash(spec)}", spec, (dist,), "finetune",
                          {"d": d, "config": config}, what), arm)


def add_arm(graph: Graph, name: str, config: ExperimentConfig, d: Distillation,
            splits: Mapping[str, list[Example]], n_for: Callable[[str, int], int]) -> None:
    """Adds one arm's stages to `graph` (shared ones once) and records its roles."""
    base = model_spec(config, d)
    roles = ArmRoles(name, config, d, {}, [], {}, dict(splits))
    # System 2 is the teacher's: with a teacher apart from the student, its model is evaluated
    who = {"system1": ("base", base, config), "system2": (
        ("teacher", teacher_spec(config), as_teacher(config)) if config.separate_teacher
        else ("base", base, config))}
    for split, examples in splits.items():
        for system, program in (("system1", d.system1), ("system2", d.program)):
            if system == "system2" and split == TEST and config.cross_fit.system2_on:
                examples = distilled_inputs(examples, config.cross_fit.system2_on,
                                            what="system2_on")
            role, model, runs = who[system]
            roles.base[(system, split)] = eval_node(
                graph, name, model=model, deps=(), program=program, task=d.test_task,
                examples=examples, config=runs, phase=f"eval_base_{split}",
                label=f"{role} {program.name} on {split}" + (
                    f" ({_teacher_name(config)})" if role == "teacher" else ""))
    K = config.cross_fit.folds
    for k in range(K) if K else [None]:
        if k is None:
            unlabeled, test = d.unlabeled, splits[TEST]
        else:
            cf = config.cross_fit
            test, unlabeled = fold_split(d.test, K, cf.seed, k, group=cf.group,
                                         distil_on=cf.distil_on)
        fold = _fold(graph, name, config, d, unlabeled=unlabeled, test=test, fold=k, n_for=n_for)
        for split, examples in splits.items():
            examples = test if split == TEST else examples
            fold.evals[split] = eval_node(
                graph, name, model={"finetune": fold.finetune}, deps=(fold.finetune,),
                program=d.system1, task=d.test_task, examples=examples, config=config,
                phase=f"eval_distilled_{split}", label=f"distilled on {split}" + (
                    f" (fold {k})" if k is not None else ""))
        roles.folds.append(fold)
    for suite in config.retention:
        task = resolve_task(suite.task, TASKS, f"retention {suite.name} task")
        if suite.method not in METHOD_NAMES:
            raise S2JaxError(f"config retention {suite.name} method {suite.method!r}: expected "
                             f"one of {', '.join(METHOD_NAMES)}")
        program = method(suite.method, task.system1)
        examples = task_examples(task, suite.data, f"retention {suite.name} data")
        tuned = roles.folds[0].finetune
        roles.retention[suite.name] = {
            who: eval_node(graph, name, model=model, deps=deps, program=program, task=task,
                           examples=examples, config=config, phase="retention",
                           label=f"{who} on retention suite {suite.name}")
            for who, model, deps in (("base", base, ()),
                                     ("distilled", {"finetune": tuned}, (tuned,)))}
    graph.arms[name] = roles


def add_selection(graph: Graph) -> None:
    """The select stage: after every arm's distilled validation evaluation."""
    rule = graph.selection
    if rule is None:
        return
    missing = [a for a, r in graph.arms.items() if SPLIT not in r.splits]
    if missing:
        raise S2JaxError(f"sweep selection: arm {missing[0]} has no validation split (a "
                         "selection rule reads only validation; set config validation)")
    candidates = {a: [f.evals[SPLIT] for f in r.folds] for a, r in graph.arms.items()}
    spec = {"rule": rule.to_json(), "candidates": candidates,
            "configs": {a: r.config.fingerprint() for a, r in graph.arms.items()}}
    deps = tuple(dict.fromkeys(i for ids in candidates.values() for i in ids))
    node = Node("select", f"select-{json_hash(spec)}", spec, deps, "select", {},
                f"{rule.metric} on validation")
    graph.nodes[node.id] = node
    graph.uses[node.id] = list(graph.arms)
    graph.select_id = node.id
    for other in graph.nodes.values():  # no test number exists before the selection record
        if other.phase in ("eval_base_test", "eval_distilled_test", "retention"):
            other.deps = (*other.deps, node.id)
