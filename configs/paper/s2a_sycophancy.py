"""S2A distilled on SycophancyEval-style TriviaQA with the user's opinion in the prompt.

20 samples per input; Universal Self-Consistency picks the answer (the paper's filter).
Paper: System 1 51.6, S2A 76.0, distilled 81.3 (biased inputs). SycophancyEval has no hub
default: put its answer.jsonl under data/sycophancy/ (or --set unlabeled.source=...).
Run: s2jax run configs/paper/s2a_sycophancy.py[:llama3.1-8b|qwen2.5-7b]
"""

import runpy
from pathlib import Path

from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig
from s2jax.run.config import DataConfig, ExperimentConfig

common = runpy.run_path(str(Path(__file__).with_name("common.py")))


def get_config(arg=None):
    return ExperimentConfig(
        name=f"s2a_sycophancy_{arg or 'llama2-70b'}",
        task="triviaqa_biased",
        method="s2a",
        unlabeled=DataConfig(source="data/sycophancy/answer.jsonl", limit=2000),
        test=DataConfig(source="data/sycophancy/answer_test.jsonl"),
        sampling=SamplingParams(n=20, temperature=0.7, top_k=40, max_new_tokens=256),
        eval_sampling=SamplingParams(max_new_tokens=256),
        distill=DistillConfig(filter="usc"),
        usc=True,
        train=common["TRAIN"],
        **common["model_fields"](arg),
    )
