"""CoT distilled on GSM8K: 10 samples, majority vote. In the paper this did NOT distil.

Paper: System 1 7.58, CoT 52.77, distilled 7.13 (accuracy, %).
Run: s2jax run configs/paper/cot_gsm8k.py[:llama3.1-8b|qwen2.5-7b]
"""

import runpy
from pathlib import Path

from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig
from s2jax.distill.vote import VoteConfig
from s2jax.run.config import DataConfig, ExperimentConfig

common = runpy.run_path(str(Path(__file__).with_name("common.py")))


def get_config(arg=None):
    return ExperimentConfig(
        name=f"cot_gsm8k_{arg or 'llama2-70b'}",
        task="gsm8k",
        method="cot_zero_shot",
        unlabeled=DataConfig(split="train"),  # GSM8K train questions; answers never read
        test=DataConfig(split="test"),
        sampling=SamplingParams(n=10, temperature=0.7, top_k=40, max_new_tokens=512),
        eval_sampling=SamplingParams(max_new_tokens=512),
        distill=DistillConfig(filter="majority", vote=VoteConfig(threshold=0.5)),
        train=common["TRAIN"],
        **common["model_fields"](arg),
    )
