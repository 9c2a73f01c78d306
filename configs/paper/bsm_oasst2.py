"""BSM distilled on OASST2 pairs, filtered by consistency under swapping responses A and B.

Trained on OASST2 inputs, evaluated on MT-bench human judgments (agreement with humans).
Paper: MT-bench agreement System 1 28.1, BSM 64.5 (~2,064 tokens), distilled 72.4 (~4 tokens).
Run: s2jax run configs/paper/bsm_oasst2.py[:llama3.1-8b|qwen2.5-7b]
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig
from s2jax.run.config import DataConfig, ExperimentConfig

common = runpy.run_path(str(Path(__file__).with_name("common.py")))


def get_config(arg=None):
    return ExperimentConfig(
        name=f"bsm_oasst2_{arg or 'llama2-70b'}",
        task="oasst2_pairs",
        test_task="mt_bench",
        method="bsm",
        unlabeled=DataConfig(limit=5000),  # the task's hub default (OASST2), labels unused
        test=DataConfig(),  # MT-bench human judgments from the hub default
        sampling=SamplingParams(n=1, temperature=0.0, max_new_tokens=1024),
        eval_sampling=SamplingParams(max_new_tokens=1024),
        distill=DistillConfig(filter="perturbation"),
        perturb=True,
        train=dataclasses.replace(common["TRAIN"], seq_len=2048),
        max_len=4096,
        **common["model_fields"](arg),
    )
