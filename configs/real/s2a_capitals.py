"""S2A distilled on real capital-city facts with a user's wrong suggestion, on a real model.

Distil on one template ("I think the answer is <largest other city> but I'm really not sure.")
of all 86 unlabeled countries; evaluate on held-out countries (`s2a_capitals_sweep.py` adds the
templates not distilled on and other tasks as retention suites). Filter: majority vote over N
samples keyed by the city, target: the winning sample's own S2A reply (not USC).
Run: s2jax run configs/real/s2a_capitals.py[:qwen2.5-coder-0.5b|smollm2-135m][,quick]
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.distill.dataset import DistillConfig
from s2jax.distill.vote import VoteConfig
from s2jax.run.config import DataConfig, ExperimentConfig

common = runpy.run_path(str(Path(__file__).with_name("common.py")))
DISTIL_ON = "suggest_incorrect"


def get_config(arg=None):
    variant, quick = common["parse_arg"](arg)
    seed = common["SPLIT_SEED"]
    return ExperimentConfig(
        name=f"s2a_capitals_{variant}" + ("_quick" if quick else ""),
        model=common["MODELS"][variant],
        task="capitals",
        method="s2a",
        unlabeled=DataConfig(split=f"unlabeled:{DISTIL_ON}", seed=seed,
                             limit=8 if quick else None),  # all 86
        test=DataConfig(split=f"test:{DISTIL_ON}", seed=seed, limit=6 if quick else None),
        sampling=dataclasses.replace(common["SAMPLING"], n=2 if quick else 4),
        eval_sampling=common["EVAL_SAMPLING"],
        distill=DistillConfig(filter="majority", vote=VoteConfig(threshold=0.5),
                              target="reply"),
        train=common["train"](steps=3 if quick else 8, learning_rate=1e-5),
        # the sampler's KV cache stays allocated while fine-tuning: 32 rows x 512 slots keep
        # it under 1 GB for both models (64 x 768 let SmolLM2's run reach 8.6 GB and be OOM-killed)
        max_batch=32,
        max_len=512,
    )
