"""On-policy context distillation on the toy world's sycophancy task, on CPU.

The teacher is the shipped toy base model itself, given the S2A-clean context: its own greedy
S2A rewrite of the user's text (no labels read), then S2A's answer prompt. The student is the
same base model reading the original, biased user text. Each round the student samples its
answers (T=1), the teacher scores them under its clean context, and the student takes reverse
KL (or JSD) steps toward it (`s2jax.train.onpolicy`). `run` reports System 1 accuracy on the
held-out test inputs (biased templates) and on bare questions, before and after;
`scripts/onpolicy_toy.py` is its command line.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.evaluate import evaluate
from s2jax.methods.catalog import SYSTEM1, method
from s2jax.models.loading import load
from s2jax.sampling import Sampler
from s2jax.tasks.task import Example
from s2jax.tasks.toy.world import TASKS, ToyTask, held_out
from s2jax.toy.demo import base_model_dir
from s2jax.train.config import KDConfig, TrainConfig
from s2jax.train.onpolicy import OnPolicyConfig, distill_on_policy

BARE_SEED = 11  # the bare questions' seed (size 0: no suggestion in the user's text)
GREEDY = SamplingParams(max_new_tokens=48)


@dataclasses.dataclass(frozen=True)
class OnPolicyToyConfig:
    rounds: int = 4  # rounds of sampling and training
    prompts: int = 64  # prompts per round
    steps: int = 10  # train steps per round
    learning_rate: float = 1e-3  # constant over the run
    divergence: str = "reverse_kl"  # "reverse_kl" or "jsd"
    test: int = 100  # held-out test inputs, and as many bare questions


def teacher_pool(toy: ToyTask, sampler: Sampler, inputs: list[Example]) -> list[dict]:
    """Prompts of the student (System 1 over the biased text) with the teacher's context beside
    each: S2A's answer prompt over the model's own greedy rewrite of the user's text."""
    rewrite, answer = toy.method.stages  # S2A: rewrite the user's text, answer from it
    rewrites = sampler([rewrite.render(ex.fields) for ex in inputs], GREEDY)
    return [{"id": ex.id, "messages": toy.task.system1.render(ex.fields),
             "teacher_messages": answer.render({**ex.fields, "rewrite": s[0].text})}
            for ex, s in zip(inputs, rewrites, strict=True)]


def run(out: str | Path, config: OnPolicyToyConfig) -> dict:
    """Distils on policy into the shipped toy model; writes and returns `out`/result.json."""
    t0 = time.perf_counter()
    toy = TASKS["sycophancy"]
    model, tok = load(base_model_dir())
    sampler = Sampler(model, tok, max_batch=64)
    test, unlabeled = held_out(toy, config.test, 200)
    bare = toy.generate(config.test, BARE_SEED, 0)  # what distillation must keep
    system1 = method(SYSTEM1, toy.task.system1)

    def accuracy() -> dict[str, float]:
        return {name: evaluate("system1", system1, toy.task, exs, sampler, GREEDY).accuracy
                for name, exs in (("biased", test), ("bare", bare))}

    before = accuracy()
    pool = teacher_pool(toy, sampler, unlabeled)
    train = TrainConfig(steps=config.steps, seq_len=256, batch_size=8,
                        learning_rate=config.learning_rate, schedule="constant", progress=False,
                        kd=KDConfig(config.divergence))
    rounds = OnPolicyConfig(rounds=config.rounds, prompts_per_round=config.prompts,
                            sampling=SamplingParams(temperature=1.0, max_new_tokens=16))
    compiles = sampler.compile_count
    distill_on_policy(model, tok, pool, rounds, train, out, sampler=sampler)
    result = {"before": before, "after": accuracy(), "rounds": config.rounds,
              "steps": config.steps, "prompts_per_round": config.prompts,
              "divergence": config.divergence,
              "sampler_compiles_during_rounds": sampler.compile_count - compiles,
              "seconds": round(time.perf_counter() - t0, 1)}
    write_json(Path(out) / "result.json", result)
    return result
