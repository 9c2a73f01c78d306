"""RaR (2-step) distilled on last-letter concatenation of 4 names; 8 samples, majority vote.

Paper (Llama-2-70B-chat): System 1 30.0, distilled RaR 98.0 (accuracy, %).
Run: s2jax run configs/paper/rar_last_letter.py[:llama3.1-8b|qwen2.5-7b]
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
        name=f"rar_last_letter_{arg or 'llama2-70b'}",
        task="last_letter",
        method="rar_2step",
        unlabeled=DataConfig(synthetic=1000, seed=1),  # inputs only: labels are never read
        test=DataConfig(synthetic=500, seed=2),
        sampling=SamplingParams(n=8, temperature=0.7, top_k=40, max_new_tokens=256),
        eval_sampling=SamplingParams(max_new_tokens=256),
        distill=DistillConfig(filter="majority", vote=VoteConfig(threshold=0.5)),
        train=common["TRAIN"],
        **common["model_fields"](arg),
    )
