"""Will it fit? Per-device memory of a training and a sampling configuration, before launch.

Nothing is allocated: the train state and the decode state are `jax.eval_shape`d, the real
train step (`s2jax.train.step`), one prefill and one real decode step (`s2jax.sampling.loop`)
are compiled for a mesh of devices, and XLA's buffer assignment (`compiled.memory_analysis()`)
gives each device's argument, output and temporary bytes. The devices are fake CPU devices
(XLA:CPU's figures, which keep fp32 copies of bf16 weights), or with a `target` the chips of a
TPU slice compiled for by the real TPU compiler (`s2jax.parallel.targets`), whose figures are
the chips' own. Training and sampling may be planned on different meshes (`sample_mesh`), as
a run may use them. The layer scan keeps compile time flat in depth, so an 80-layer 70B model
plans in about the time of a 2-layer one. `hand_estimate` is the closed form of docs/plan.md,
which the compiled figures are checked against.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from s2jax.core.errors import S2JaxError
from s2jax.core.overrides import override, set_flag
from s2jax.core.text_generator import SamplingParams
from s2jax.models.config import ModelConfig
from s2jax.models.loading import load_config as load_model_config
from s2jax.models.lora import adapter_specs, num_adapter_params
from s2jax.models.params import num_params, param_shardings, param_specs
from s2jax.models.projection import LORA_SCALE
from s2jax.parallel.sharding import MESH_AXES, RULES, make_mesh, named_sharding, parse_mesh
from s2jax.parallel.targets import parse_target, target_mesh
from s2jax.run.config import load_config
from s2jax.sampling import loop
from s2jax.sampling.engine import unrolls_layers
from s2jax.sampling.token_rules import SamplingMethod
from s2jax.train.config import TrainConfig
from s2jax.train.loss import chunk_len
from s2jax.train.optim import learning_rate_schedule, make_optimizer
from s2jax.train.state import plan_state
from s2jax.train.step import TeacherModel, batch_shapes, batch_sharding, make_train_step

GiB = 2**30
DEFAULT_SAMPLE_BATCH = 64  # decode rows when neither an option nor a config says


@dataclasses.dataclass(frozen=True)
class PlanInputs:
    """What `plan` plans: a model's shapes, its fine-tuning, the meshes and the sampler's
    sizes."""

    model: ModelConfig
    train: TrainConfig
    mesh: dict[str, int]  # the train step's
    sample_mesh: dict[str, int]  # prefill and decode's
    sample_batch: int
    max_len: int  # sampler cache slots per row
    sample_dtype: str | None
    name: str  # the model's name in the report
    teacher: ModelConfig | None = None  # a teacher apart from the student (None: the student)
    teacher_name: str = ""
    teacher_dtype: str | None = None  # the teacher's weights (None: the sampling dtype)


def _name(shape: str) -> str:
    """A model's name in the report: a file's stem, else the directory or fetched name (whose
    dots, as in qwen2.5-coder-0.5b-instruct, are not a suffix)."""
    path = Path(shape)
    return path.stem if path.suffix in (".json", ".gguf") else path.name


def plan_inputs(config: str, devices: int, *, mesh: str | None = None,
                sample_mesh: str | None = None, train_changes: Mapping[str, Any] | None = None,
                change_name: Callable[[str], str] = set_flag, sample_batch: int | None = None,
                max_len: int | None = None, sample_dtype: str | None = None,
                teacher: str | None = None, teacher_dtype: str | None = None) -> PlanInputs:
    """The inputs of `plan` for `config`, an experiment config `path.py[:arg]` (its
    `model_shape`, else its `model`; its train config, mesh and sampler sizes) or a model (an
    HF config.json, checkpoint dir, .gguf or fetched model's name: its shapes, with a default
    `TrainConfig`).

    Given values win over the config's: `train_changes` are dotted `TrainConfig` fields
    (`change_name` names one in errors). A run samples on the config's `mesh` and trains on its
    `train.mesh` where set: the train step's mesh is `mesh`, else the train config's, else the
    config's, else fsdp over every device; the sampling mesh is `sample_mesh`, else `mesh` (one
    mesh for both stages), else the config's, else the train step's. The sample batch defaults
    to the config's `max_batch` (else 64), the cache length to the config's `max_len` (else the
    model's max positions). The teacher (a model, as `config`'s) defaults to the config's
    separate teacher (its `model_shape`, else its model), else none (the student).
    """
    exp = load_config(config)[0] if config.partition(":")[0].endswith(".py") else None
    shape = (exp.model_shape or exp.model) if exp else config
    model = load_model_config(shape)
    train = override(exp.train if exp else TrainConfig(), train_changes or {}, name=change_name)
    run_mesh = exp.mesh if exp else ""
    train_mesh = mesh or train.mesh or run_mesh or f"fsdp={devices}"
    if teacher is None and exp is not None and exp.separate_teacher:
        teacher = exp.teacher.model_shape or exp.teacher_model
    teacher_cfg = load_model_config(teacher) if teacher else None
    check_teacher_vocabulary(model, train, teacher_cfg, _name(teacher) if teacher else "")
    return PlanInputs(
        model=model, train=train, mesh=parse_mesh(train_mesh),
        sample_mesh=parse_mesh(sample_mesh or mesh or run_mesh or train_mesh),
        sample_batch=sample_batch or (exp.max_batch if exp else DEFAULT_SAMPLE_BATCH),
        max_len=max_len or (exp.max_len if exp else None) or model.max_position_embeddings,
        sample_dtype=sample_dtype or (exp.dtype if exp else None), name=_name(shape),
        teacher=teacher_cfg, teacher_name=_name(teacher) if teacher else "",
        teacher_dtype=teacher_dtype or (exp.teacher_dtype if exp else None))


@dataclasses.dataclass(frozen=True)
class PlanReport:
    """Per-device bytes of one configuration; `*_total` is what must fit in device memory."""

    model: str
    num_params: int
    mesh: dict[str, int]  # the train step's
    device_memory: int  # bytes per device
    # the train step, from XLA's memory analysis
    params: int  # the state's (trained) weights, in `param_dtype`: with LoRA, the adapters
    opt_state: int  # Adam's moments (+ step counters)
    frozen: int  # with LoRA, the frozen base weights in their own dtype (else 0)
    batch: int  # tokens, targets, segment ids and weights of one step
    activations: int  # XLA temporaries: activations kept for backward, gradients, updates
    train_arguments: int  # XLA's argument bytes of the step: state + batch
    train_total: int  # arguments + temporaries + outputs not aliased to donated arguments
    # one decode step of the sampler
    sample_params: int  # weights in the sampling dtype
    kv_cache: int  # the decode state's KV cache
    sample_arguments: int  # XLA's argument bytes of a decode step: weights + decode state
    decode_temp: int
    sample_total: int  # weights + decode state + temporaries (+ `unrolled_weights`)
    sample_batch: int
    sample_max_len: int
    # one prefill of `sample_batch` prompts of `sample_max_len` slots (the longest prompt)
    prefill_temp: int  # XLA temporaries: activations and attention scores of one chunk
    prefill_total: int  # weights + decode state + the prompts' cache + temporaries (+ the same)
    compile_seconds: float
    hand: dict[str, int]  # the closed-form figures of `hand_estimate`
    remat: str = "none"  # the remat policy planned for
    lora: str = ""  # e.g. "rank 16 on q,k,v,o,gate,up,down: 207.6M adapter params"; "" full
    compiler: str = "XLA:CPU"  # whose memory analysis: "XLA:CPU" (fake devices) or "TPU v5p-64"
    sample_mesh: dict[str, int] | None = None  # prefill and decode's, where not `mesh`
    # programs the TPU compiler refused for want of memory (their temporaries as it reported)
    out_of_memory: tuple[str, ...] = ()
    # the teacher: with token-level distillation (train.kd) its frozen weights are arguments of
    # the train step (counted as their own: an upper bound where they are the student's loaded
    # weights, which a run shares); a teacher apart from the student also samples System 2
    teacher: str = ""  # its name when it is another model, "student" for the student's own
    teacher_train: int = 0  # its weights in the train step (train.kd), per device
    teacher_sample_params: int = 0  # a separate teacher's weights in the sampling dtype
    teacher_sample_total: int = 0  # its decode step (weights + decode state + temporaries)
    teacher_prefill_total: int = 0  # its prefill of the longest prompts
    # where the sampler decodes with its layers unrolled (`engine.unrolls_layers`), the
    # per-layer copy of the stacked layer weights it makes for a call and holds through it
    unrolled_weights: int = 0

    @property
    def separate_teacher(self) -> bool:
        return bool(self.teacher) and self.teacher != "student"

    @property
    def fits_train(self) -> bool:
        return self.train_total <= self.device_memory

    @property
    def run_total(self) -> int:
        """Training inside a `s2jax run` process: the loaded model keeps its weights (the
        sampler's, in the sampling dtype) beside the train state; with LoRA they are the frozen
        base, counted already."""
        loaded = 0 if self.frozen or self.teacher == "student" else self.sample_params
        # a separate teacher stays loaded for sampling; in a KD step its weights are counted
        teacher = self.teacher_sample_params if self.separate_teacher and \
            not self.teacher_train else 0
        return self.train_total + loaded + teacher

    @property
    def fits_run(self) -> bool:
        return self.run_total <= self.device_memory

    @property
    def sample_peak(self) -> int:
        return max(self.sample_total, self.prefill_total, self.teacher_sample_total,
                   self.teacher_prefill_total)

    @property
    def fits_sample(self) -> bool:
        return self.sample_peak <= self.device_memory

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "fits_train": self.fits_train,
                "fits_sample": self.fits_sample, "run_total": self.run_total,
                "fits_run": self.fits_run}

    def table(self) -> str:
        """The report as text: compiled and hand figures per device, in GiB."""
        mesh = _mesh_text(self.mesh)
        if self.sample_mesh and self.sample_mesh != self.mesh:
            mesh = f"{mesh} (train), {_mesh_text(self.sample_mesh)} (sampling)"
        cap = self.device_memory / GiB
        rows = [("frozen base (LoRA)", self.frozen, "frozen")] if self.frozen else []
        rows += [("trained params", self.params, "params"),
                 ("optimizer state", self.opt_state, "adam"), ("batch", self.batch, "batch"),
                ("activations + grads (temp)", self.activations, "temp"),
                ("train total", self.train_total, "train_total"),
                ("sampling params", self.sample_params, "sample_params"),
                ("KV cache", self.kv_cache, "kv_cache"),
                ("decode temp", self.decode_temp, None),
                ("sampling total", self.sample_total, "sample_total"),
                ("prefill temp", self.prefill_temp, None),
                ("prefill total", self.prefill_total, None)]
        if self.unrolled_weights:
            rows.insert(rows.index(("decode temp", self.decode_temp, None)),
                        ("layer copy (unrolled decode)", self.unrolled_weights, None))
        if self.teacher_train:
            rows.insert(rows.index(("train total", self.train_total, "train_total")),
                        ("frozen teacher (KD)", self.teacher_train, None))
        if self.separate_teacher:
            rows += [("teacher sampling params", self.teacher_sample_params, None),
                     ("teacher sampling total", self.teacher_sample_total, None),
                     ("teacher prefill total", self.teacher_prefill_total, None)]
        lines = [f"{self.model}: {self.num_params / 1e9:.2f}B params, mesh {mesh} "
                 f"({math.prod(self.mesh.values())} devices x {cap:.0f} GiB)"
                 + (f"; LoRA {self.lora}" if self.lora else "")
                 + (f"; teacher {self.teacher}" if self.teacher else ""),
                 f"{'per device':<28}{self.compiler + ' GiB':>20}{'hand GiB':>10}"]
        for name, value, key in rows:
            hand = f"{self.hand[key] / GiB:10.2f}" if key else f"{'-':>10}"
            lines.append(f"{name:<28}{value / GiB:20.2f}{hand}")
        verdict = lambda ok, total: (f"fits ({total / GiB:.1f} of {cap:.0f} GiB)" if ok else
                                     f"does NOT fit ({total / GiB:.1f} > {cap:.0f} GiB)")
        lines.append(f"train: {verdict(self.fits_train, self.train_total)}")
        if not self.frozen:
            loaded = "weights" if not self.separate_teacher else "and teacher's weights"
            lines.append(f"train in a `s2jax run` process (+ the loaded model's {loaded}): "
                         f"{verdict(self.fits_run, self.run_total)}")
        who = " (student and teacher)" if self.separate_teacher else ""
        lines.append(f"sample{who} (batch {self.sample_batch} x {self.sample_max_len} slots, "
                     f"prefill and decode): {verdict(self.fits_sample, self.sample_peak)}")
        if self.out_of_memory:
            lines.append(f"{self.compiler} ran out of memory compiling "
                         f"{', '.join(self.out_of_memory)}: its temporaries as it reported them")
        lines.append(f"remat {self.remat}; compiled by {self.compiler} in "
                     f"{self.compile_seconds:.1f} s")
        return "\n".join(lines)


def _mesh_text(sizes: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items())


def _shard_bytes(x) -> int:
    """Bytes one device holds of an abstract array with a sharding."""
    return math.prod(x.sharding.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize


def _full(sizes: dict[str, int]) -> dict[str, int]:
    """`sizes` with every mesh axis (missing ones 1), unknown axes kept for `_check`."""
    return {a: int(sizes.get(a, 1)) for a in MESH_AXES} | {
        k: v for k, v in sizes.items() if k not in MESH_AXES}


def _check(train_cfg: TrainConfig, mesh_sizes: dict[str, int], sample_mesh: dict[str, int],
           devices: int, sample_batch: int, available: int | None,
           model_cfg: ModelConfig | None = None, teacher_cfg: ModelConfig | None = None,
           teacher_name: str = "") -> None:
    """Both meshes name known axes, use `devices` devices, and split their batches evenly;
    `available`: the devices this process can plan for (None: a TPU target's own); a KD
    teacher shares the student's vocabulary."""
    for flag, sizes in (("--mesh", mesh_sizes), ("--sample-mesh", sample_mesh)):
        unknown = set(sizes) - set(MESH_AXES)
        if unknown:
            raise S2JaxError(f"{flag}: unknown axes {sorted(unknown)} (expected data, fsdp, "
                             f"tensor)")
        want = math.prod(sizes.get(a, 1) for a in MESH_AXES)
        if want != devices:
            raise S2JaxError(f"{flag} {sizes} needs {want} devices but --devices is {devices}")
    if available is not None and devices > available:
        raise S2JaxError(f"--devices {devices}: this process has {available} devices "
                         "(run `s2jax plan`, which starts JAX with enough fake CPU devices)")
    for name, value, sizes in (("batch_size", train_cfg.batch_size, mesh_sizes),
                               ("sample batch", sample_batch, sample_mesh)):
        rows = sizes.get("data", 1) * sizes.get("fsdp", 1)
        if value % rows:
            raise S2JaxError(f"{name} {value}: expected a multiple of data x fsdp = {rows}")
    if model_cfg is not None:
        check_teacher_vocabulary(model_cfg, train_cfg, teacher_cfg, teacher_name)


def _lora_bytes(cfg: ModelConfig, lora, mesh_sizes: dict[str, int], itemsize: int) -> int:
    """Per-device bytes of the adapters: each split over the mesh axes of its named axes (the
    weight's), where they divide it; the rank axis is replicated."""
    total = 0
    for spec in adapter_specs(cfg, lora).values():
        split = 1
        for n, axis in zip(spec.shape, spec.axes, strict=True):
            target = RULES.get(axis) if axis else None
            size = math.prod(mesh_sizes.get(a, 1) for a in
                             ((target,) if isinstance(target, str) else target or ()))
            split *= size if n % size == 0 else 1
        total += math.prod(spec.shape) * itemsize // split
    return total


def planned_remat(remat: str) -> str:
    """The remat policy a plan is made for. "auto" depends on the run's backend ("dots" on CPU,
    "none" on GPU/TPU), which a plan, compiled on fake CPU devices, cannot see: it plans "none",
    the larger."""
    return "none" if remat == "auto" else remat


def hand_estimate(cfg: ModelConfig, tcfg: TrainConfig, mesh_sizes: dict[str, int],
                  sample_batch: int, sample_max_len: int, sample_dtype: str, *,
                  sample_mesh: dict[str, int] | None = None, flash: bool = False
                  ) -> dict[str, int]:
    """The closed form of docs/plan.md: per-device bytes, each term divided by its sharding.

    With LoRA the trained params are the adapters and the base is frozen in the sampling dtype
    (the dtype the run loads the model in), with no gradient, update or Adam moments. Sampling
    terms are split over `sample_mesh` (default: `mesh_sizes`). `flash`: attention never holds
    the [T, T] scores (splash on TPU, cuDNN on GPU), only their fp32 log-sum-exp per row.
    """
    data, fsdp, tensor = (mesh_sizes.get(a, 1) for a in MESH_AXES)
    pb, cb = jnp.dtype(tcfg.param_dtype).itemsize, jnp.dtype(tcfg.compute_dtype).itemsize
    sb = jnp.dtype(sample_dtype).itemsize
    D, F, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.vocab_size
    N, K, H = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    P = num_params(cfg)
    shard = fsdp * tensor  # every weight is split over both (replicated over data)
    frozen = P * sb // shard if tcfg.lora.enabled else 0
    params = (_lora_bytes(cfg, tcfg.lora, mesh_sizes, pb) if tcfg.lora.enabled
              else P * pb // shard)
    grads = params  # one gradient per trained weight, in the weight's dtype
    adam = 2 * params  # mu and nu, in the weight's dtype
    # one micro-batch on one device: its rows, all T tokens; heads and MLP split over tensor
    rows = tcfg.batch_size // (data * fsdp)
    T = tcfg.seq_len
    t = rows * T
    carry = t * D * cb  # one layer's input x [B, T, D]
    # what one layer keeps for backward without remat: h, q, k, v, attention output, o, h2
    # ([B,T,D]-sized) in the compute dtype, scores and probabilities [B, N, T, T] in fp32,
    # gate, up and silu(gate)*up [B, T, F]
    qkv = t * (N + 2 * K) * H * cb // tensor
    scores = rows * N * T * 4 // tensor if flash else 2 * rows * N * T * T * 4 // tensor
    layer = 4 * carry + qkv + t * N * H * cb // tensor + scores + 3 * t * F * cb // tensor
    remat = planned_remat(tcfg.remat)
    if remat == "full":
        saved = L * carry + layer  # layer inputs, plus one layer recomputed at a time
    elif remat == "dots":
        saved = L * (layer - scores) + layer
    else:
        saved = L * layer
    # the fused LM head + loss holds one chunk's fp32 logits at a time, their gradient written
    # over them (XLA gives both one buffer: bench/train_memory.py's step at 262k tokens)
    chunk = rows * chunk_len(tcfg.batch_size, T, tcfg.loss_chunk)
    logits = chunk * V * 4 // tensor
    # the global-norm clip needs every gradient before it scales any, so the clipped update
    # is a second gradient-sized buffer
    temp = 2 * grads + saved + logits
    batch = 4 * tcfg.grad_accum * t * 4
    data, fsdp, tensor = (_full(sample_mesh or mesh_sizes)[a] for a in MESH_AXES)
    kv = 2 * L * sample_batch * sample_max_len * K * H * sb // (data * fsdp)
    kv //= tensor if K % tensor == 0 else 1
    sample_params = P * sb // (fsdp * tensor)
    return dict(frozen=frozen, params=params, grads=grads, adam=adam,
                activations=saved + logits, temp=temp, batch=batch,
                train_total=frozen + params + adam + batch + temp, kv_cache=kv,
                sample_params=sample_params, sample_total=sample_params + kv)


def hand_teacher(hand: dict[str, int], teacher_cfg: ModelConfig, tcfg: TrainConfig,
                 mesh_sizes: dict[str, int], sample_batch: int, sample_max_len: int,
                 teacher_dtype: str, *, sample_mesh: dict[str, int] | None = None
                 ) -> dict[str, int]:
    """`hand` (the student's closed form) with a separate teacher's terms: its weights frozen
    in the train step with `tcfg.kd` (split over fsdp x tensor as the student's; its forward's
    temporaries are not counted), and its own sampling (weights + KV cache) at the student's
    sampler sizes. With sequence-level KD it only samples, and stays loaded while the student
    trains (`run_total`)."""
    t = hand_estimate(teacher_cfg, tcfg, mesh_sizes, sample_batch, sample_max_len,
                      teacher_dtype, sample_mesh=sample_mesh)
    shard = mesh_sizes.get("fsdp", 1) * mesh_sizes.get("tensor", 1)
    weights = num_params(teacher_cfg) * jnp.dtype(teacher_dtype).itemsize // shard
    kd = weights if tcfg.kd.enabled else 0
    return dict(hand, teacher_train=kd, train_total=hand["train_total"] + kd,
                teacher_sample_params=t["sample_params"], teacher_kv_cache=t["kv_cache"],
                teacher_sample_total=t["sample_total"],
                run_total=hand["train_total"] + (kd or t["sample_params"]))


def hand_table(hand: dict[str, int], title: str, device_memory_gib: float) -> str:
    """`hand_estimate`'s figures as text, with whether each stage fits (no compiler involved:
    for GPUs, whose compiler a CPU machine does not have)."""
    cap = device_memory_gib * GiB
    lines = [title, f"{'per device (hand)':<28}{'GiB':>10}"]
    for name, key in (("frozen base (LoRA)", "frozen"), ("trained params", "params"),
                      ("optimizer state", "adam"), ("batch", "batch"),
                      ("activations + grads (temp)", "temp"), ("train total", "train_total"),
                      ("sampling params", "sample_params"), ("KV cache", "kv_cache"),
                      ("sampling total", "sample_total"), ("frozen teacher (KD)", "teacher_train"),
                      ("teacher sampling params", "teacher_sample_params"),
                      ("teacher KV cache", "teacher_kv_cache"),
                      ("teacher sampling total", "teacher_sample_total"),
                      ("run (teacher loaded)", "run_total")):
        if key in hand and (key not in ("frozen", "teacher_train") or hand[key]):
            lines.append(f"{name:<28}{hand[key] / GiB:10.2f}")
    for stage, key in (("train", "train_total"), ("sample (weights + KV cache)", "sample_total"),
                       ("teacher sample", "teacher_sample_total"),
                       ("run with the teacher loaded", "run_total")):
        if key not in hand:
            continue
        ok = hand[key] <= cap
        lines.append(f"{stage}: {'fits' if ok else 'does NOT fit'} ({hand[key] / GiB:.1f} "
                     f"{'of' if ok else '>'} {device_memory_gib:.0f} GiB)")
    return "\n".join(lines)


def _abstract_weights(cfg: ModelConfig, mesh: Mesh, dtype) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct(s.shape, dtype, sharding=sharding)
            for (k, s), sharding in zip(param_specs(cfg).items(),
                                        param_shardings(cfg, mesh).values(), strict=True)}


def frozen_weights(cfg: ModelConfig, tcfg: TrainConfig, mesh: Mesh, base_dtype
                   ) -> dict[str, jax.ShapeDtypeStruct]:
    """The train step's frozen weights, abstract with their shardings: with LoRA the base in
    `base_dtype` (the dtype the run loads it in) and the adapters' scale; else none."""
    if not tcfg.lora.enabled:
        return {}
    scale = jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec()))
    return {**_abstract_weights(cfg, mesh, base_dtype), LORA_SCALE: scale}


def teacher_weights(tcfg: TrainConfig, mesh: Mesh, teacher_cfg: ModelConfig | None, dtype
                    ) -> dict[str, jax.ShapeDtypeStruct]:
    """The frozen teacher's weights in the train step, abstract with their shardings (none
    unless `tcfg.kd` is on)."""
    return _abstract_weights(teacher_cfg, mesh, dtype) if tcfg.kd.enabled else {}


def train_memory(cfg: ModelConfig, tcfg: TrainConfig, mesh: Mesh, base_dtype=None,
                 teacher_cfg: ModelConfig | None = None, teacher_dtype=None):
    """(compiled train step's memory analysis, abstract state with shardings, abstract batch).

    `base_dtype`: with LoRA, the frozen base's dtype (default: the compute dtype). With
    `tcfg.kd` on, the step also holds a frozen teacher of shapes `teacher_cfg` (default: the
    student's) in `teacher_dtype` (default: `base_dtype`).
    """
    tx = make_optimizer(tcfg, 1000)
    _, target = plan_state(cfg, tx, mesh, jnp.dtype(tcfg.param_dtype), tcfg.lora)
    shardings = jax.tree.map(lambda x: x.sharding, target)
    base_dtype = base_dtype or jnp.dtype(tcfg.compute_dtype)
    frozen = frozen_weights(cfg, tcfg, mesh, base_dtype)
    teacher_cfg = teacher_cfg or cfg
    teacher = teacher_weights(tcfg, mesh, teacher_cfg, teacher_dtype or base_dtype)
    step = make_train_step(cfg, tcfg, tx, learning_rate_schedule(tcfg, 1000), shardings, mesh,
                           jax.tree.map(lambda x: x.sharding, frozen),
                           TeacherModel(teacher_cfg, jax.tree.map(lambda x: x.sharding, teacher))
                           if tcfg.kd.enabled else None)
    batch = {k: jax.ShapeDtypeStruct(shape, jnp.float32 if k == "weights" else jnp.int32,
                                     sharding=batch_sharding(mesh, shape))
             for k, shape in batch_shapes(tcfg, (tcfg.grad_accum,)).items()}
    args = (target, frozen, teacher, batch)
    return _memory(step.lower(*args), args), target, batch


@dataclasses.dataclass(frozen=True)
class OutOfMemory:
    """A program the TPU compiler refused because it does not fit (CompileTimeHbmOom): its
    arguments' bytes, and its temporaries as the compiler's message gives them."""

    argument_size_in_bytes: int
    temp_size_in_bytes: int
    output_size_in_bytes: int = 0
    alias_size_in_bytes: int = 0


def _memory(lowered, args):
    """The compiled program's memory analysis, or `OutOfMemory` where the (TPU) compiler
    refuses it for want of device memory, which is itself the answer a plan asks for."""
    try:
        return lowered.compile().memory_analysis()
    except jax.errors.JaxRuntimeError as e:
        # "... memory required for HLO temporaries (167.90G) exceeds available HBM (95.73G)"
        m = re.search(r"HLO temporaries \(([\d.]+)([KMGT]?)\)", str(e))
        if "RESOURCE_EXHAUSTED" not in str(e) or m is None:
            raise
        unit = 1024 ** (" KMGT".index(m.group(2) or " "))
        return OutOfMemory(sum(_shard_bytes(x) for x in jax.tree.leaves(args)),
                           int(float(m.group(1)) * unit))


def compiled_total(analysis) -> int:
    """Peak bytes of a compiled step: arguments + temporaries + outputs not aliased to inputs."""
    return (analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
            + max(analysis.output_size_in_bytes - analysis.alias_size_in_bytes, 0))


def _abstract_state(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int, dtype):
    state = jax.eval_shape(functools.partial(loop.DecodeState.empty, cfg, batch, max_len, 256,
                                             dtype=dtype, keys_last=loop.cache_keys_last(mesh)),
                           0)
    state_shardings = loop.DecodeState.shardings(mesh, cfg, batch, max_len, 256)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, state_shardings)


def _decode_memory(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int, dtype):
    """(one compiled decode step's memory analysis, params bytes, cache bytes), per device."""
    params = _abstract_weights(cfg, mesh, dtype)
    state = _abstract_state(cfg, mesh, batch, max_len, dtype)
    method = SamplingMethod.from_params(SamplingParams(temperature=0.7, top_k=40))
    step = jax.jit(functools.partial(loop.decode_step, cfg, method, (), dtype, mesh=mesh),
                   out_shardings=jax.tree.map(lambda x: x.sharding, state), donate_argnums=1)
    analysis = _memory(step.lower(params, state), (params, state))
    return (analysis, sum(_shard_bytes(x) for x in params.values()),
            _shard_bytes(state.cache.k) + _shard_bytes(state.cache.v))


def prefill_memory(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int, prompt_len: int,
                   dtype, chunk: int | None = None):
    """The compiled memory analysis of one prefill of `batch` prompts of `prompt_len` slots
    into a decode state of `batch` rows x `max_len` slots (`chunk`: tokens per prefill pass,
    default the sampler's)."""
    params = _abstract_weights(cfg, mesh, dtype)
    state = _abstract_state(cfg, mesh, batch, max_len, dtype)
    method = SamplingMethod.from_params(SamplingParams(temperature=0.7, top_k=40))
    replicated = NamedSharding(mesh, PartitionSpec())
    tokens = jax.ShapeDtypeStruct((batch, prompt_len), jnp.int32,
                                  sharding=named_sharding(mesh, ("batch", None),
                                                          (batch, prompt_len)))
    rows = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=replicated)
    fn = jax.jit(functools.partial(loop.prefill_into, cfg, method, (), dtype,
                                   chunk=chunk or loop.PREFILL_CHUNK, mesh=mesh),
                 out_shardings=jax.tree.map(lambda x: x.sharding, state), donate_argnums=1)
    return _memory(fn.lower(params, state, tokens, *[rows] * 6), (params, state, tokens))


def _meshes(mesh_sizes, sample_mesh, devices, target):
    """(train mesh, sampling mesh, compiler label): over this process's first `devices` (fake
    CPU) devices, or over the chips of the TPU slice `target` names."""
    if target is None:
        devs = jax.devices()[:devices]
        return (make_mesh(**mesh_sizes, devices=devs), make_mesh(**sample_mesh, devices=devs),
                "XLA:CPU")
    if devices != target.chips:
        raise S2JaxError(f"--devices {devices}: {target.name} has {target.chips} chips")
    return (target_mesh(target, mesh_sizes), target_mesh(target, sample_mesh),
            f"TPU {target.name}")


def _planned(train_cfg: TrainConfig) -> tuple[TrainConfig, str]:
    """(the train config as planned, its remat policy's description): "auto" is planned as
    the policy of a GPU or TPU run."""
    if train_cfg.remat != "auto":
        return train_cfg, train_cfg.remat
    return (dataclasses.replace(train_cfg, remat=planned_remat(train_cfg.remat)),
            "auto, planned as none (GPU/TPU); CPU runs use dots: --remat dots plans them")


def _sampling_memory(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int, dtype):
    """(`_decode_memory`'s triple, the prefill's memory analysis, `unrolled_weights`) of the
    sampler."""
    return (_decode_memory(cfg, mesh, batch, max_len, dtype),
            prefill_memory(cfg, mesh, batch, max_len, max_len, dtype),
            unrolled_weights(cfg, mesh, dtype))


def unrolled_weights(cfg: ModelConfig, mesh: Mesh, dtype, platform: str | None = None) -> int:
    """Per device, the per-layer copy of the layer weights (`split_layers`) that a sampler on
    `mesh` (on `platform`, default its devices') holds through a call where it decodes with
    its layers unrolled, else 0. The compiled programs take the stacked weights: this is on
    top of them."""
    platform = platform or mesh.devices.flat[0].platform
    if not unrolls_layers(num_params(cfg), platform):
        return 0
    return sum(_shard_bytes(x) for name, x in _abstract_weights(cfg, mesh, dtype).items()
               if name.startswith("layers."))


def _teacher_fields(model_cfg: ModelConfig, train_cfg: TrainConfig, mesh: Mesh, smesh: Mesh,
                    teacher_cfg: ModelConfig | None, name: str, dtype, batch: int,
                    max_len: int) -> tuple[dict, tuple]:
    """The teacher's `PlanReport` fields, and its compiled programs by name: its frozen weights
    in the train step (with `train_cfg.kd`; the student's own without `teacher_cfg`), and a
    separate teacher's sampling of System 2 with its own weights and KV cache on `smesh`."""
    in_step = teacher_weights(train_cfg, mesh, teacher_cfg or model_cfg, dtype)
    fields = dict(teacher=name if teacher_cfg is not None else
                  ("student" if train_cfg.kd.enabled else ""),
                  teacher_train=sum(_shard_bytes(x) for x in in_step.values()))
    if teacher_cfg is None:
        return fields, ()
    (decode, params, _), prefill, copy = _sampling_memory(teacher_cfg, smesh, batch, max_len,
                                                          dtype)
    return (dict(fields, teacher_sample_params=params, teacher_sample_total=compiled_total(
        decode) + copy, teacher_prefill_total=compiled_total(prefill) + copy),
            (("teacher decode", decode), ("teacher prefill", prefill)))


def plan(model_cfg: ModelConfig, train_cfg: TrainConfig, mesh_sizes: dict[str, int],
         devices: int, device_memory_gib: float | None, sample_batch: int, sample_max_len: int,
         *, sample_dtype: str | None = None, name: str = "model",
         sample_mesh: dict[str, int] | None = None, target: str | None = None,
         teacher_cfg: ModelConfig | None = None, teacher_name: str = "teacher",
         teacher_dtype: str | None = None) -> PlanReport:
    """Compiles the train step, a prefill and a decode step; returns a `PlanReport` of their
    memory per device and whether training and sampling fit.

    Args:
      model_cfg: the model's shapes (e.g. `ModelConfig.from_file(config.json)`).
      train_cfg: batch, sequence length, dtypes and remat of the fine-tuning run.
      mesh_sizes: the train step's {data, fsdp, tensor} sizes (missing: 1; product: devices).
      devices: devices to plan for (at least this process's, or a `target`'s chip count).
      device_memory_gib: memory of one device, GiB (None with a `target`: its chips' HBM).
      sample_batch: decode rows of the sampler; sample_max_len: its cache slots per row.
      sample_dtype: weight and cache dtype of the sampler (default: the train compute dtype).
      name: the model's name in the report.
      sample_mesh: the mesh of prefill and decode (default: `mesh_sizes`).
      target: a TPU slice (`v5p-64`, ...): compile for its chips with the TPU compiler.
      teacher_cfg: a teacher apart from the student (it samples System 2; with `train_cfg.kd`
        it runs frozen in the train step); None: the student teaches itself.
      teacher_name: the teacher's name in the report.
      teacher_dtype: the teacher's weight dtype (default `sample_dtype`).
    """
    tpu = parse_target(target) if target else None
    mesh_sizes, sample_mesh = _full(mesh_sizes), _full(sample_mesh or mesh_sizes)
    train_cfg, remat = _planned(train_cfg)
    _check(train_cfg, mesh_sizes, sample_mesh, devices, sample_batch,
           None if tpu else len(jax.devices()), model_cfg, teacher_cfg, teacher_name)
    mesh, smesh, compiler = _meshes(mesh_sizes, sample_mesh, devices, tpu)
    sample_dtype = sample_dtype or train_cfg.compute_dtype
    t0 = time.perf_counter()
    t_dtype = jnp.dtype(teacher_dtype or sample_dtype)
    train, state, batch = train_memory(model_cfg, train_cfg, mesh, jnp.dtype(sample_dtype),
                                       teacher_cfg, t_dtype)
    frozen = frozen_weights(model_cfg, train_cfg, mesh, jnp.dtype(sample_dtype))
    (decode, sample_params, kv), prefill, copy = _sampling_memory(
        model_cfg, smesh, sample_batch, sample_max_len, jnp.dtype(sample_dtype))
    teacher, teacher_programs = _teacher_fields(model_cfg, train_cfg, mesh, smesh, teacher_cfg,
                                                teacher_name, t_dtype, sample_batch, sample_max_len)
    seconds = time.perf_counter() - t0
    total = lambda tree: sum(_shard_bytes(x) for x in jax.tree.leaves(tree))
    return PlanReport(
        model=name, num_params=num_params(model_cfg), mesh=mesh_sizes,
        device_memory=int((device_memory_gib or (tpu.hbm_gib if tpu else 0)) * GiB),
        params=total(state.params), unrolled_weights=copy,
        opt_state=total(state.opt_state), frozen=total(frozen), batch=total(batch),
        activations=train.temp_size_in_bytes, train_arguments=train.argument_size_in_bytes,
        train_total=compiled_total(train), sample_params=sample_params, kv_cache=kv,
        sample_arguments=decode.argument_size_in_bytes, decode_temp=decode.temp_size_in_bytes,
        sample_total=compiled_total(decode) + copy, sample_batch=sample_batch,
        sample_max_len=sample_max_len, prefill_temp=prefill.temp_size_in_bytes,
        prefill_total=compiled_total(prefill) + copy, compile_seconds=seconds,
        hand=hand_estimate(model_cfg, train_cfg, mesh_sizes, sample_batch, sample_max_len,
                           sample_dtype, sample_mesh=sample_mesh, flash=tpu is not None),
        remat=remat, lora=_lora_summary(model_cfg, train_cfg), compiler=compiler,
        sample_mesh=sample_mesh, out_of_memory=tuple(
            name for name, a in (("train step", train), ("decode", decode), ("prefill", prefill),
                                 *teacher_programs) if isinstance(a, OutOfMemory)), **teacher)


def check_teacher_vocabulary(model_cfg: ModelConfig, train_cfg: TrainConfig,
                             teacher_cfg: ModelConfig | None, teacher_name: str) -> None:
    """Refuses token-level distillation (`train_cfg.kd`) from a teacher of another vocabulary."""
    if train_cfg.kd.enabled and teacher_cfg is not None and \
            teacher_cfg.vocab_size != model_cfg.vocab_size:
        raise S2JaxError(f"--kd {train_cfg.kd.divergence}: the teacher {teacher_name} has "
                         f"{teacher_cfg.vocab_size} tokens, the student {model_cfg.vocab_size}; "
                         "token-level distillation needs one vocabulary (plan without --kd for "
                         "distillation through text)")


def _lora_summary(cfg: ModelConfig, tcfg: TrainConfig) -> str:
    if not tcfg.lora.enabled:
        return ""

    n = num_adapter_params(cfg, tcfg.lora)
    return (f"rank {tcfg.lora.rank} on {','.join(tcfg.lora.targets)}: {n / 1e6:.1f}M adapter "
            f"params, base frozen")
