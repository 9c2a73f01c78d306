"""Experiment configs: small typed Python files, overridable from the command line.

A config file defines `get_config(arg: str | None = None) -> ExperimentConfig` (big_vision
style; `s2jax run configs/x.py:variant` passes "variant"), and may define `sweep()` returning
{arm name: {dotted key: value}} overrides beside it, and `selection`, the rule that picks one arm
on the validation split (`s2jax.run.selection.Selection`). `--set sampling.n=8` overrides one
field, parsed by the type of the value it replaces (`s2jax.core.overrides`).
"""

from __future__ import annotations

import dataclasses
import math
import runpy
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from s2jax.core.errors import S2JaxError
from s2jax.core.hashing import json_hash
from s2jax.core.overrides import check_types, override
from s2jax.core.ownership import check_input
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig
from s2jax.train.config import KDConfig, OnPolicyConfig, TrainConfig

MAX_SYNTHETIC = 1_000_000  # synthetic inputs of one run: each is held in memory with its samples


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a task's examples come from."""

    source: str | None = None  # file, dir, hub id or tfds:NAME; None: the task's hub default
    split: str | None = None  # overrides the task's default split
    limit: int | None = None  # first `limit` examples
    synthetic: int = 0  # > 0: generate this many examples (synthetic tasks), ignoring `source`
    seed: int = 0  # seed of the synthetic generator, or of a task's package-shipped splits

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise S2JaxError(f"limit={self.limit}: expected >= 1 (or none for every input)")
        if not 0 <= self.synthetic <= MAX_SYNTHETIC:
            raise S2JaxError(f"synthetic={self.synthetic}: expected 0..{MAX_SYNTHETIC} "
                             "(0: read `source`)")


@dataclasses.dataclass(frozen=True)
class CrossFit:
    """Cross-fitting over one labelled pool: every pool item is tested exactly once."""

    folds: int = 0  # K >= 2: the pool is `test`; fold k's model is distilled on the other folds'
    # inputs (labels stripped, `unlabeled` unused) and tested on fold k; 0: off
    seed: int = 0  # which pool items fall in which fold (the split seed)
    group: str = ""  # an input field (e.g. "country"): inputs sharing its value share a fold,
    # so no fact is both distilled on (under one template) and tested (under another); "": id
    distil_on: str = ""  # "FIELD=VALUE" (e.g. "template=suggest_incorrect"): the only pool
    # inputs System 2 runs on and the folds distil on; every pool input is still tested
    system2_on: str = ""  # "FIELD=VALUE": the only pool inputs the base System 2 is evaluated
    # on (a multi-stage System 2 costs several System 1 replies an input); "": every one

    def __post_init__(self):
        if self.folds == 1 or self.folds < 0:
            raise S2JaxError(f"cross_fit.folds={self.folds}: expected 0 (off) or >= 2")
        for name in ("distil_on", "system2_on"):
            spec = getattr(self, name)
            field, eq, value = spec.partition("=")
            if spec and not (eq and field.strip() and value.strip()):
                raise S2JaxError(f"cross_fit.{name}={spec!r}: expected FIELD=VALUE, e.g. "
                                 "template=suggest_incorrect (or empty: every pool input)")


@dataclasses.dataclass(frozen=True)
class Suite:
    """An evaluation suite of the retention stage: one task's inputs under one prompt program."""

    name: str  # its label in results.json and reports (unique within a config)
    task: str  # a task name, as `ExperimentConfig.task`
    data: DataConfig = DataConfig()  # its labelled inputs
    method: str = "system1"  # the prompt program the model answers with ("system1": directly)


# Controls (s2jax.run.protocol): what the fine-tuning targets are instead of System 2's voted
# answers. "system1": self-consistency of System 1 itself (the paper's "Distill System 1");
# "own_unbiased": each biased input -> the base model's own voted answer to the bare question
# (label-free, no System 2); "gold": the gold labels of the inputs the filter kept (the filter's
# ceiling); "shuffled": the kept answers permuted among the kept inputs.
Control = Literal["", "system1", "own_unbiased", "gold", "shuffled"]


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The model that runs System 2 and that the student learns from. An empty field takes the
    student's: by default one model plays both roles (the paper's self-distillation).

    The teacher's kept System 2 answers (or whole final replies, `distill.target`) are the
    student's targets as text, which works across tokenizers (sequence-level distillation).
    With `train.kd` on, the teacher also runs frozen in every train step and the student
    learns its next-token distributions on the answer tokens (token-level; one vocabulary).
    """

    model: str = ""  # checkpoint dir, .gguf or fetched model name; "": the student `model`
    model_shape: str = ""  # config.json of its shapes, for `s2jax plan`; "": `model`'s
    method: str = ""  # its System 2 program, a key of `s2jax.methods.METHODS`; "": `method`
    sampling: SamplingParams | None = None  # its System 2 sampling; None: the run's `sampling`
    dtype: str | None = None  # its weight dtype; None: the run's `dtype`
    # what the teacher reads in token-level distillation: "system2", the final prompt of its
    # System 2 program for the kept sample (S2A: the rewritten question; context distillation),
    # or "system1", the student's own prompt
    context: Literal["system2", "system1"] = "system2"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One System 2 distillation run: generate -> vote -> train -> evaluate."""

    name: str  # the run's name, used for run directories and reports
    model: str  # the student: local HF checkpoint dir, .gguf or fetched model name
    task: str  # a key of `s2jax.tasks.TASKS` (or of the toy world's tasks)
    method: str  # the teacher's System 2 method, a key of `s2jax.methods.METHODS`
    model_shape: str = ""  # config.json giving the model's shapes without weights (for `plan`)
    test_task: str | None = None  # evaluate on another task of the same answer format (BSM:
    # train on OASST2 inputs, test on MT-bench judgments); None: `task`
    unlabeled: DataConfig = DataConfig()  # inputs System 2 runs on; their labels are never read
    test: DataConfig = DataConfig()  # labelled held-out inputs for evaluation
    sampling: SamplingParams = SamplingParams(n=8, temperature=0.7, top_k=40,
                                              max_new_tokens=512)  # System 2 sampling
    eval_sampling: SamplingParams = SamplingParams(max_new_tokens=512)  # greedy evaluation
    distill: DistillConfig = DistillConfig()  # which label-free filter, and its vote threshold
    usc: bool = False  # run the Universal Self-Consistency stage (filter "usc")
    perturb: bool = False  # also run the task's perturbed inputs (filter "perturbation")
    train: TrainConfig = TrainConfig()  # the System 1 fine-tuning
    # "data=..,fsdp=..,tensor=..": where the model loads, samples and is evaluated; "" is one
    # device. Training runs on `train.mesh` where set (over the same devices, e.g. fsdp for the
    # step and tensor for decode), the weights resharded device to device between the stages
    mesh: str = ""
    dtype: str | None = None  # weight dtype; None keeps the checkpoint's
    chat: bool = True  # chat-template prompts (instruct models) vs raw text
    max_batch: int = 64  # sampler rows in flight
    max_len: int | None = None  # sampler cache length; None: the model's max positions
    shard_size: int = 128  # inputs per shard of the sampling stages: a kill loses at most one
    teacher: TeacherConfig = TeacherConfig()  # the System 2 model; by default the student
    # -- the experimental protocol (`s2jax sweep`; see s2jax.run.protocol)
    validation: DataConfig | None = None  # labelled inputs a selection rule reads (never test)
    cross_fit: CrossFit = CrossFit()  # folds over the `test` pool instead of `unlabeled`
    control: Control = ""  # "": System 2 distillation; else a control variant (above)
    retention: tuple[Suite, ...] = ()  # suites the base and the distilled model are run on
    # on-policy context distillation instead of generate -> vote -> SFT: the student samples its
    # own answers to the unlabeled inputs, round by round, and learns (train.kd) the frozen
    # teacher's distribution on them; the teacher (by default the base model itself, with
    # LoRA the base with adapters off) reads the input's System 2 context, the final prompt of
    # `method` over its own greedy earlier stages (S2A: the question as its rewrite states it,
    # the opinion removed; no label is read). None: off (s2jax.run.onpolicy)
    onpolicy: OnPolicyConfig | None = None

    def __post_init__(self):
        check_types(self, "config")
        names = [s.name for s in self.retention if isinstance(s, Suite)]
        if len(names) != len(self.retention) or len(set(names)) != len(names):
            raise S2JaxError(f"config retention: expected Suites with unique names, got "
                             f"{[getattr(s, 'name', s) for s in self.retention]}")
        checks = [
            (self.distill.filter != "usc" or self.usc,
             f"distill.filter=usc needs usc=True (got usc={self.usc})"),
            (self.distill.filter != "perturbation" or self.perturb,
             f"distill.filter=perturbation needs perturb=True (got perturb={self.perturb})"),
            (self.dtype in DTYPES, f"dtype={self.dtype!r}: expected one of {DTYPES}"),
            (self.teacher.dtype in DTYPES,
             f"teacher.dtype={self.teacher.dtype!r}: expected one of {DTYPES}"),
            (self.max_batch >= 1, f"max_batch={self.max_batch}: expected >= 1"),
            (self.max_len is None or self.max_len >= 2,
             f"max_len={self.max_len}: expected >= 2 (or none for the model's)"),
            (self.shard_size >= 1, f"shard_size={self.shard_size}: expected >= 1"),
            (not self.train.curriculum.enabled or self.distill.target == "trace",
             "train.curriculum removes traces: it needs distill.target=trace (got "
             f"{self.distill.target!r})"),
            (bool(self.name) and "/" not in self.name,
             f"name={self.name!r}: expected a non-empty name without '/'"),
        ]
        for ok, message in checks:
            if not ok:
                raise S2JaxError(f"config {message}")
        self._check_meshes()
        self._check_onpolicy()

    def _check_onpolicy(self) -> None:
        """An on-policy run has a divergence, steps per round, a teacher context, no vote."""
        if self.onpolicy is None:
            return
        checks = [
            (self.train.kd.enabled, "train.kd.divergence=none: expected reverse_kl, jsd or "
             "forward_kl (the student learns the teacher's distributions)"),
            (self.train.steps >= 1, f"train.steps={self.train.steps}: expected >= 1 (the "
             "optimizer steps of each round)"),
            (self.chat, "chat=False: expected chat=True (rounds sample chat replies)"),
            (self.teacher.context == "system2" or self.separate_teacher,
             "teacher.context=system1 with the student's own model as teacher: it would read "
             "what the student reads (the loss starts at 0); expected teacher.context=system2"),
            (not (self.control or self.usc or self.perturb),
             f"control={self.control!r}, usc={self.usc}, perturb={self.perturb}: expected "
             "none of them (on-policy rounds have no vote and no targets)"),
            (not self.train.curriculum.enabled,
             "train.curriculum: expected none (on-policy rounds have no traces to remove)"),
        ]
        for ok, message in checks:
            if not ok:
                raise S2JaxError(f"config onpolicy: {message}")

    def _check_meshes(self) -> None:
        """`mesh` and `train.mesh` parse, and span the same devices (stages share them)."""
        if not (self.mesh or self.train.mesh):
            return
        from s2jax.parallel.sharding import parse_mesh  # imports JAX: only where a mesh is set

        sizes = {}
        for field, spec in (("mesh", self.mesh), ("train.mesh", self.train.mesh)):
            if spec:
                sizes[field] = parse_mesh(spec)
                if min(sizes[field].values()) < 1:
                    raise S2JaxError(f"config {field}={spec!r}: every axis size must be >= 1")
        if len(sizes) == 2:
            n, m = (math.prod(v.values()) for v in sizes.values())
            if n != m:
                raise S2JaxError(f"config train.mesh={self.train.mesh!r} spans {m} devices but "
                                 f"mesh={self.mesh!r} spans {n}: the stages share the devices")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def teacher_model(self) -> str:
        return self.teacher.model or self.model

    @property
    def teacher_method(self) -> str:
        return self.teacher.method or self.method

    @property
    def teacher_sampling(self) -> SamplingParams:
        return self.teacher.sampling or self.sampling

    @property
    def teacher_dtype(self) -> str | None:
        return self.teacher.dtype or self.dtype

    @property
    def separate_teacher(self) -> bool:
        """Whether the teacher is another checkpoint than the student (two models load)."""
        return self.teacher_model != self.model or self.teacher_dtype != self.dtype

    def fingerprint(self) -> str:
        """A hash of everything that determines the run's artifacts.

        Protocol fields, the teacher section, `train.kd`, `onpolicy` and cross-fitting's fields
        after `folds` and `seed` count only when set, so run dirs made before they existed resume.
        """
        unset = {k for k, v in PROTOCOL_DEFAULTS.items() if getattr(self, k) == v}
        data = {k: v for k, v in self.to_json().items() if k not in unset}
        if self.teacher == TeacherConfig():
            del data["teacher"]
        if self.onpolicy is None:
            del data["onpolicy"]
        if self.train.kd == KDConfig():
            data["train"] = {k: v for k, v in data["train"].items() if k != "kd"}
        if "cross_fit" in data:  # as cross-fitting's later fields (group, distil_on, ...)
            data["cross_fit"] = {k: v for k, v in data["cross_fit"].items()
                                 if k in ("folds", "seed") or v != ""}
        return json_hash(data)

    @property
    def uses_protocol(self) -> bool:
        """Whether it needs `s2jax sweep` (validation, folds, a control or retention)."""
        return any(getattr(self, k) != v for k, v in PROTOCOL_DEFAULTS.items())


DTYPES = (None, "float32", "bfloat16")
PROTOCOL_DEFAULTS = {"validation": None, "cross_fit": CrossFit(), "control": "",
                     "retention": ()}


def load_config(spec: str) -> tuple[ExperimentConfig, Any]:
    """Runs a config file `path[:arg]`; returns its config and its module namespace."""
    path, _, arg = spec.partition(":")
    check_input(path, "a config file")
    if not Path(path).is_file():
        raise S2JaxError(f"{path}: no such config file (expected a Python file with get_config)")
    namespace = _user_code(path, lambda: runpy.run_path(path), "get_config")
    if not callable(namespace.get("get_config")):
        raise S2JaxError(f"{path}: defines no get_config()")
    config = _user_code(path, lambda: namespace["get_config"](arg or None), "get_config")
    if not isinstance(config, ExperimentConfig):
        raise S2JaxError(f"{path}: get_config() returned {type(config).__name__}, "
                         "expected ExperimentConfig")
    return config, namespace


def _user_code(path: str, run: Callable[[], Any], name: str) -> Any:
    """`run()`: code of the config file, whose every failure (an exception, a `sys.exit`) is a
    bad input naming the file and line."""
    try:
        return run()
    except S2JaxError:
        raise
    except SystemExit as e:  # would end the command with its code, having run nothing
        raise S2JaxError(f"{path}: the config file called sys.exit({e.code!r}); expected "
                         f"{name} to return its result, not to exit") from None
    except Exception as e:  # user code: any failure is a bad input
        where = _user_line(e, path)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise S2JaxError(f"{where}: the config file failed ({type(e).__name__}: "
                         f"{first[:300]}); expected {name} to return "
                         f"{'an ExperimentConfig' if name == 'get_config' else 'its result'}"
                         ) from None


def sweep_points(namespace: dict, path: str, config: ExperimentConfig
                 ) -> dict[str, ExperimentConfig]:
    """The configs of a config file's `sweep()`: {point name: `config` with its overrides}."""
    if not callable(namespace.get("sweep")):
        raise S2JaxError(f"{path}: --sweep, but the file defines no sweep()")
    points = _user_code(path, namespace["sweep"], "sweep")
    if not isinstance(points, dict) or not points:
        raise S2JaxError(f"{path}: sweep() returned {type(points).__name__} "
                         f"{'with no points' if isinstance(points, dict) else ''}; expected a "
                         "non-empty {point name: {key: value}} dict")
    out = {}
    for name, sets in points.items():
        if not (isinstance(name, str) and name and name not in (".", "..") and "/" not in name
                and "\0" not in name):
            raise S2JaxError(f"{path}: sweep() point name {name!r}: expected a plain directory "
                             "name (no '/', not '.' or '..')")
        if not isinstance(sets, dict):
            raise S2JaxError(f"{path}: sweep() point {name!r} is {type(sets).__name__}, "
                             "expected a {key: value} dict")
        out[name] = override(config, sets, name=lambda k, p=name: f"sweep point {p}: {k}")
    return out


def _user_line(e: BaseException, path: str) -> str:
    """`path:line` of the deepest frame of `e` inside the config file (else `path`)."""
    if isinstance(e, SyntaxError) and e.lineno:
        return f"{path}:{e.lineno}"
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
             if Path(f.filename).resolve() == Path(path).resolve()]
    return f"{path}:{lines[-1]}" if lines else path
