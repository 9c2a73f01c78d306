"""`TrainConfig`: every knob of a fine-tuning run, one commented field each (`LoraConfig`: the
low-rank adapters of a LoRA run, also read from and written to PEFT's adapter_config.json;
`CurriculumConfig`: the trace-removal curriculum of stepwise internalization; `KDConfig`: the
token-level distillation loss; `OnPolicyConfig`: the rounds of on-policy distillation)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args, get_type_hints

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.models.lora_config import LORA_TARGETS, LoraConfig  # noqa: F401 (re-exported)

DIVERGENCES = ("none", "forward_kl", "reverse_kl", "jsd")


@dataclasses.dataclass(frozen=True)
class KDConfig:
    """Token-level distillation: the student's next-token distribution pulled toward a frozen
    teacher's at every loss token, mixed with cross-entropy on the targets:
    loss = ce_weight * CE + (1 - ce_weight) * divergence (s2jax/train/divergence.py)."""

    # "none": cross-entropy only (SFT); "forward_kl": KL(teacher || student); "reverse_kl":
    # KL(student || teacher); "jsd": generalized JSD of GKD, beta KL(t || m) + (1 - beta)
    # KL(s || m) with m = beta t + (1 - beta) s (beta -> 0 behaves as forward, -> 1 as reverse)
    divergence: Literal["none", "forward_kl", "reverse_kl", "jsd"] = "none"
    beta: float = 0.5  # the JSD's mixture weight, in (0, 1)
    ce_weight: float = 0.0  # share of cross-entropy on the targets in the loss, in [0, 1]
    teacher_seq_len: int = 0  # tokens per row of the teacher's context; 0: the student's

    def __post_init__(self):
        if self.divergence not in DIVERGENCES:
            raise S2JaxError(f"train config kd.divergence={self.divergence!r}: expected one of "
                             f"{DIVERGENCES}")
        if not (isinstance(self.beta, (int, float)) and 0 < self.beta < 1):
            raise S2JaxError(f"train config kd.beta={self.beta!r}: expected 0 < beta < 1 (0 "
                             "and 1 are forward_kl and reverse_kl)")
        if not (isinstance(self.ce_weight, (int, float)) and 0 <= self.ce_weight <= 1):
            raise S2JaxError(f"train config kd.ce_weight={self.ce_weight!r}: expected a number "
                             "in [0, 1]")
        if self.teacher_seq_len < 0 or self.teacher_seq_len == 1:
            raise S2JaxError(f"train config kd.teacher_seq_len={self.teacher_seq_len}: expected "
                             ">= 2 (or 0: the student's seq_len)")

    @property
    def enabled(self) -> bool:
        return self.divergence != "none"


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """Stepwise internalization (Deng, Choi, Shieber 2024, arXiv 2405.14838): train on examples
    with a reasoning trace, and at each stage remove `tokens_per_stage` more tokens from the
    start of every trace, until none is left (`s2jax.train.curriculum`)."""

    tokens_per_stage: int = 0  # trace tokens removed per stage; 0: no curriculum
    steps_per_stage: int = 0  # optimizer steps per stage (the last stage runs to the end)
    # steps of stage 0 (the full traces), e.g. longer for a model trained from scratch; 0: as
    # every stage. The learning-rate schedule spans `steps_per_stage` in every stage.
    first_stage_steps: int = 0
    # stages in all; 0: enough to remove the longest trace, plus one stage with no trace left
    stages: int = 0
    # removal smoothing lambda: each example drops o more tokens, P(o) ~ exp(-lambda o), drawn
    # per example and epoch (the paper: 4, i.e. o > 0 for 2% of examples); 0: off
    smoothing: float = 0.0
    reset_optimizer: bool = True  # a fresh optimizer (moments, schedule) at each stage

    def __post_init__(self):
        for name in ("tokens_per_stage", "steps_per_stage", "first_stage_steps", "stages"):
            if getattr(self, name) < 0:
                raise S2JaxError(f"train config curriculum.{name}={getattr(self, name)}: "
                                 "expected >= 0")
        if not (math.isfinite(self.smoothing) and self.smoothing >= 0):
            raise S2JaxError(f"train config curriculum.smoothing={self.smoothing!r}: expected a "
                             "finite number >= 0 (0: no smoothing)")
        if self.enabled and self.steps_per_stage < 1:
            raise S2JaxError(f"train config curriculum.steps_per_stage={self.steps_per_stage}: "
                             "expected >= 1 when curriculum.tokens_per_stage > 0")

    @property
    def enabled(self) -> bool:
        return self.tokens_per_stage > 0

    @property
    def first_steps(self) -> int:
        """Steps of stage 0."""
        return self.first_stage_steps or self.steps_per_stage


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A supervised fine-tuning run. Hashable, so the jitted step can close over it."""

    # -- length of the run
    steps: int = 0  # optimizer steps; 0 derives them from `epochs` (or the curriculum's stages)
    epochs: float = 1.0  # passes over the training rows when `steps` is 0
    # -- batch
    seq_len: int = 512  # tokens per row; longer examples are cut (counted in the log)
    batch_size: int = 8  # rows per micro-batch, global (split over the data and fsdp mesh axes)
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    pack: bool = True  # several examples per row (segment ids keep them apart) vs one per row
    loss_on: Literal["assistant", "all"] = "assistant"  # assistant answers only, or every token
    # -- optimizer: AdamW with decoupled weight decay (not on norms or biases)
    learning_rate: float = 1e-4  # peak learning rate, reached after warmup
    warmup_steps: int = 0  # linear warmup from 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # decay after warmup
    min_lr_ratio: float = 0.0  # final learning rate as a fraction of the peak
    weight_decay: float = 0.0  # AdamW's decoupled decay, per step, times the learning rate
    b1: float = 0.9  # Adam's decay of the gradient's running mean
    b2: float = 0.999  # Adam's decay of the squared gradient's running mean
    eps: float = 1e-8  # Adam's denominator floor
    max_grad_norm: float = 1.0  # global-norm clipping; 0 disables it
    # -- numerics and memory
    compute_dtype: Literal["float32", "bfloat16"] = "float32"  # activations and matmuls
    # params and optimizer state ("float32" keeps fp32 master weights under bf16 compute)
    param_dtype: Literal["float32", "bfloat16"] = "float32"
    # per-layer rematerialisation policy; "auto": "dots" on CPU, "none" on GPU/TPU
    # (s2jax.models.transformer.resolve_remat)
    remat: Literal["auto", "none", "full", "dots"] = "auto"
    # tokens (over the micro-batch) whose fp32 logits exist at once in the fused LM head +
    # cross-entropy; 0 = all of them. Peak memory grows as loss_chunk x vocab x 4 bytes.
    loss_chunk: int = 1024
    mesh: str = ""  # e.g. "data=2,fsdp=2,tensor=2"; "" uses the mesh the model was loaded on
    # -- data order
    seed: int = 0  # shuffling (per epoch) and the held-out split
    eval_examples: int = 0  # examples held out of training for the eval loss
    eval_every: int = 0  # steps between evaluations (0: only at the end)
    # -- checkpoints and logs
    checkpoint_every: int = 0  # steps between async orbax saves (0: only the final step)
    keep_checkpoints: int = 2  # most recent checkpoints kept
    log_every: int = 1  # steps between metrics rows in metrics.jsonl / TensorBoard
    progress: bool = True  # tqdm progress bar on stderr
    export: bool = True  # write the final model to <run_dir>/model with `s2jax.save`
    # -- LoRA: rank > 0 trains adapters only (base frozen in its own dtype, no optimizer state
    # for it); checkpoints hold the adapters, export writes the merged model/ and a PEFT adapter/
    lora: LoraConfig = LoraConfig()
    # -- stepwise internalization: remove the examples' traces a few tokens per stage
    curriculum: CurriculumConfig = CurriculumConfig()  # off unless tokens_per_stage > 0
    # -- token-level distillation from a frozen teacher
    kd: KDConfig = KDConfig()  # the divergence and its mix with cross-entropy ("none": SFT)

    def __post_init__(self):
        for name, hint in get_type_hints(type(self)).items():
            value, choices = getattr(self, name), get_args(hint)
            if choices and value not in choices:
                raise S2JaxError(f"train config {name}={value!r}: expected one of {choices}")
        for name in ("seq_len", "batch_size", "grad_accum", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise S2JaxError(f"train config {name}={getattr(self, name)}: expected >= 1")
        for name in ("steps", "warmup_steps", "loss_chunk", "eval_examples", "eval_every",
                     "checkpoint_every"):
            if getattr(self, name) < 0:
                raise S2JaxError(f"train config {name}={getattr(self, name)}: expected >= 0")
        for name in ("learning_rate", "min_lr_ratio", "weight_decay", "b1", "b2", "eps",
                     "max_grad_norm", "epochs"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise S2JaxError(f"train config {name}={value!r}: expected a finite number >= 0")
        if self.seq_len < 2:
            raise S2JaxError(f"train config seq_len={self.seq_len}: expected >= 2")
        if self.curriculum.enabled and self.loss_on != "assistant":
            raise S2JaxError("train config curriculum: traces are removed from assistant turns; "
                             f"expected loss_on='assistant', got {self.loss_on!r}")

    @property
    def rows_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    @property
    def teacher_seq_len(self) -> int:
        return self.kd.teacher_seq_len or self.seq_len


@dataclasses.dataclass(frozen=True)
class OnPolicyConfig:
    """The rounds of on-policy distillation (`s2jax.train.onpolicy`); each round's training is
    a `TrainConfig`'s, whose `steps` are the steps per round."""

    rounds: int = 4  # sample -> score -> update rounds
    prompts_per_round: int = 32  # prompts drawn (without replacement, per round) from the pool
    # the student's sampling of its own answers (GKD samples at temperature 1)
    sampling: SamplingParams = SamplingParams(n=1, temperature=1.0, max_new_tokens=32)
    seed: int = 0  # which prompts each round draws

    def __post_init__(self):
        for name in ("rounds", "prompts_per_round"):
            if getattr(self, name) < 1:
                raise S2JaxError(f"on-policy config {name}={getattr(self, name)}: expected >= 1")
