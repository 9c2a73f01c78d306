"""RaR (1-step) distilled on coin flip on a real model: the task where the greedy check on the
validation questions showed System 2 ahead of System 1 (docs/real_results.md).

Unlabeled and test questions come from the synthetic generator with different seeds (coin flip
has no facts to hold out). Majority vote over N samples; target: the winning sample's answer
as the task writes it ("Yes"/"No"), the System 1 format.
Run: s2jax run configs/real/rar_coin_flip.py[:smollm2-135m|qwen2.5-coder-0.5b][,quick]
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.distill.dataset import DistillConfig
from s2jax.distill.vote import VoteConfig
from s2jax.run.config import DataConfig, ExperimentConfig

common = runpy.run_path(str(Path(__file__).with_name("common.py")))


def get_config(arg=None):
    variant, quick = common["parse_arg"](arg)
    return ExperimentConfig(
        name=f"rar_coin_flip_{variant}" + ("_quick" if quick else ""),
        model=common["MODELS"][variant],
        task="coin_flip",
        method="rar_1step",
        unlabeled=DataConfig(synthetic=8 if quick else 128, seed=1),
        test=DataConfig(synthetic=6 if quick else 64, seed=2),
        sampling=dataclasses.replace(common["SAMPLING"], n=2 if quick else 4,
                                     max_new_tokens=128),
        eval_sampling=dataclasses.replace(common["EVAL_SAMPLING"], max_new_tokens=128),
        distill=DistillConfig(filter="majority", vote=VoteConfig(threshold=0.5)),
        train=common["train"](steps=3 if quick else 8, learning_rate=1e-5),
        # the sampler's KV cache stays allocated while fine-tuning: 32 rows x 512 slots keep
        # it under 1 GB for both models (64 x 768 let SmolLM2's run reach 8.6 GB and be OOM-killed)
        max_batch=32,
        max_len=512,
    )
