"""On-policy context distillation against SFT distillation of S2A on real capitals (issue 24).

Arms (s2jax run configs/real/s2a_capitals_onpolicy.py:ARM[,MODEL][,quick]), both LoRA rank 8
at a constant 1e-4 on s2a_capitals.py's split (86 unlabeled countries under the wrong-suggestion
template, labels never read):
  sft       System 2 distillation as before: S2A sampled N=4 at T=0.7, majority vote over the
            city at >= 3 of 4, the winning reply as the target, 3 steps (issue 25's lora_s0)
  onpolicy  on-policy context distillation: the student (the biased question) samples its own
            answers at T=1, round by round; the teacher is the same base model, adapters off,
            reading S2A's answer prompt over its own greedy rewrite of the question (the
            user's opinion removed, no label read); reverse KL on the student's answer tokens
MODEL: qwen2.5-coder-0.5b (default) or smollm2-135m (common.py).

The run's own evaluation (`test`) is on the 15 VALIDATION countries: these runs train and are
checked on validation only; the number of on-policy rounds is chosen there
(scripts/real_onpolicy.py --validation), and the test countries are read once, afterwards, by
scripts/real_onpolicy.py --test (docs/real_preregistration.md, issue 24's on-policy addendum).
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig
from s2jax.distill.vote import VoteConfig
from s2jax.models.lora_config import LoraConfig
from s2jax.run.config import DataConfig, TeacherConfig
from s2jax.train.config import KDConfig, OnPolicyConfig

here = Path(__file__).parent
base = runpy.run_path(str(here / "s2a_capitals.py"))
common = runpy.run_path(str(here / "common.py"))
ARMS = ("sft", "onpolicy")
VARIANTS = (*ARMS, *(f"{arm},smollm2-135m" for arm in ARMS))  # what tests/test_configs.py loads
LORA = LoraConfig(rank=8)
RATE = 1e-4  # adapters need a larger rate than full fine-tuning (issue 25's lora_s0)
ROUNDS = 4  # the most rounds run; how many to use is chosen on validation
# the student's own answers: a capital answer is one sentence (~10 tokens)
STUDENT_SAMPLING = SamplingParams(n=1, temperature=1.0, max_new_tokens=32)


def get_config(arg=None):
    parts = [p for p in (arg or "").split(",") if p]
    arms = [p for p in parts if p in ARMS]
    if len(arms) != 1:
        raise ValueError(f"config arg {arg!r}: expected ARM[,MODEL][,quick] with ARM one of "
                         f"{', '.join(ARMS)}")
    rest = ",".join(p for p in parts if p not in ARMS)
    _, quick = common["parse_arg"](rest)
    config = base["get_config"](rest or None)
    seed = common["SPLIT_SEED"]
    validation = DataConfig(split="validation:suggest_incorrect", seed=seed,
                            limit=3 if quick else None)
    train = dataclasses.replace(config.train, lora=LORA, learning_rate=RATE,
                                steps=1 if quick else 3)
    name = config.name.replace("s2a_capitals", f"s2a_capitals_{arms[0]}")
    config = dataclasses.replace(config, name=name, test=validation, train=train)
    if arms[0] == "sft":
        return dataclasses.replace(config, distill=dataclasses.replace(
            config.distill, vote=VoteConfig(threshold=0.75)))
    return dataclasses.replace(
        config, distill=DistillConfig(),  # no vote: the rounds have no targets
        train=dataclasses.replace(train, kd=KDConfig("reverse_kl", teacher_seq_len=512)),
        teacher=TeacherConfig(context="system2"),
        onpolicy=OnPolicyConfig(rounds=1 if quick else ROUNDS,
                                prompts_per_round=4 if quick else 32,
                                sampling=STUDENT_SAMPLING))
