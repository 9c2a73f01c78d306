"""S2A on real capitals with a teacher: across model sizes, or by the teacher's distributions.

Variants (s2jax run configs/real/s2a_capitals_teacher.py:VARIANT[,quick]):
  qwen-to-smollm2   sequence-level: Qwen2.5-Coder-0.5B runs S2A, its kept replies are the
                    targets of SmolLM2-135M-Instruct's System 1 (two tokenizers: through text)
  qwen-context-kd   token-level context distillation on Qwen2.5-Coder-0.5B: the teacher is the
                    base model itself reading S2A's clean prompt (its own rewrite of the
                    question), the student the biased question; reverse KL on the answer
                    tokens, mixed with 0.25 cross-entropy
Everything else is s2a_capitals.py's recipe.
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.run.config import TeacherConfig
from s2jax.train.config import KDConfig

here = Path(__file__).parent
base = runpy.run_path(str(here / "s2a_capitals.py"))
common = runpy.run_path(str(here / "common.py"))
VARIANTS = ("qwen-to-smollm2", "qwen-context-kd")


def get_config(arg=None):
    parts = [p for p in (arg or "").split(",") if p]
    quick = "quick" in parts
    names = [p for p in parts if p != "quick"] or [VARIANTS[0]]
    if len(names) != 1 or names[0] not in VARIANTS:
        raise ValueError(f"config arg {arg!r}: expected VARIANT[,quick] with VARIANT one of "
                         f"{', '.join(VARIANTS)}")
    variant = names[0]
    qwen = common["MODELS"]["qwen2.5-coder-0.5b"]
    suffix = ",quick" if quick else ""
    name = f"s2a_capitals_{variant}" + ("_quick" if quick else "")
    if variant == "qwen-to-smollm2":
        config = base["get_config"]("smollm2-135m" + suffix)
        return dataclasses.replace(config, name=name,
                                   teacher=TeacherConfig(model=qwen))
    config = base["get_config"]("qwen2.5-coder-0.5b" + suffix)
    train = dataclasses.replace(config.train, kd=KDConfig("reverse_kl", ce_weight=0.25,
                                                          teacher_seq_len=512))
    return dataclasses.replace(config, name=name,
                               train=train, teacher=TeacherConfig(context="system2"))
