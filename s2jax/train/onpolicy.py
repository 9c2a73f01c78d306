"""On-policy distillation: the student samples its own answers with its current weights, a
frozen teacher scores those tokens, and the student moves toward the teacher's distribution
on them (reverse KL or GKD's JSD, `TrainConfig.kd`), for a set number of rounds.

Each round is one short `finetune` in `run_dir/round_NNN/` on the round's samples, which are
written there first (`samples.jsonl`, atomically): a killed run resumes in its last round from
that round's checkpoint and samples, after reloading the weights the previous round exported,
so it sees the same samples and batches as an uninterrupted run. The sampler takes each
round's new weights with `set_params` (same shapes: no recompilation). Adam's moments start
afresh every round.

For context distillation (Snell et al. 2022; issue 24), a prompt's `teacher_messages` are what
the teacher reads before the student's answer (e.g. the System 2 prompt with the clean
question) while the student reads `messages` (the original input).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from s2jax.core.atomic import write_jsonl
from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.models.loading import load
from s2jax.models.weights import Weights
from s2jax.train.config import TrainConfig
from s2jax.train.loop import finetune


@dataclasses.dataclass(frozen=True)
class OnPolicyConfig:
    """The rounds of on-policy distillation; each round's training is `TrainConfig`'s."""

    rounds: int = 4  # sample -> score -> update rounds
    prompts_per_round: int = 32  # prompts drawn (without replacement, per round) from the pool
    # the student's sampling of its own answers (GKD samples at temperature 1)
    sampling: SamplingParams = SamplingParams(n=1, temperature=1.0, max_new_tokens=32)
    seed: int = 0  # which prompts each round draws

    def __post_init__(self):
        for name in ("rounds", "prompts_per_round"):
            if getattr(self, name) < 1:
                raise S2JaxError(f"on-policy config {name}={getattr(self, name)}: expected >= 1")


def round_prompts(pool: Sequence[dict], config: OnPolicyConfig, r: int) -> list[dict]:
    """The prompts of round `r`: a draw from the pool that depends only on (seed, r)."""
    rng = np.random.default_rng([config.seed, r])
    take = min(config.prompts_per_round, len(pool))
    return [pool[i] for i in rng.permutation(len(pool))[:take]]


def _examples(prompts: Sequence[dict], samples: Sequence[dict]) -> list[dict]:
    """Chats ending in the student's own answers, for the student and for the teacher."""
    out = []
    for p, s in zip(prompts, samples, strict=True):
        for text in s["texts"]:
            answer = {"role": "assistant", "content": text}
            out.append({"messages": [*p["messages"], answer],
                        "teacher_messages": [*p.get("teacher_messages", p["messages"]),
                                             answer]})
    return out


def _sample(sampler, prompts: Sequence[dict], config: OnPolicyConfig, path: Path
            ) -> list[dict]:
    """The round's samples: read back if this round sampled already, else drawn and written."""
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines()]
    samples = sampler([p["messages"] for p in prompts], config.sampling)
    rows = [{"id": p.get("id", str(i)), "texts": [s.text for s in ss]}
            for i, (p, ss) in enumerate(zip(prompts, samples, strict=True))]
    write_jsonl(path, rows)
    return rows


def _done(round_dir: Path) -> bool:
    return (round_dir / "train" / "summary.json").is_file() and \
        (round_dir / "train" / "model" / "config.json").is_file()


def _load_weights(model, directory: Path) -> None:
    """Puts the weights exported to `directory` into `model` (each in `model`'s dtype)."""
    exported, _ = load(directory)
    for name, value in exported.params().items():
        old = model.param(name).get_value()
        model.param(name).set_value(jax.device_put(value.astype(old.dtype), old.sharding))
    model.identity = None  # no longer the files' it was loaded from (as finetune's write-back)


def distill_on_policy(student, tokenizer, prompts: Sequence[dict], config: OnPolicyConfig,
                      train: TrainConfig, run_dir: str | Path, *, sampler, teacher=None,
                      teacher_tokenizer=None, log=print):
    """Runs (or resumes) the rounds; returns the student holding the final weights.

    Args:
      student: a `Transformer` as it was before any round (a resumed run passes the same);
        its weights are replaced round by round.
      tokenizer: its tokenizer.
      prompts: the pool, each {"messages": the student's chat without the answer, and
        optionally "teacher_messages": the teacher's, "id"}.
      config: rounds, prompts per round, the student's sampling.
      train: each round's fine-tuning; `train.kd` must be on (reverse_kl or jsd, typically)
        and `train.steps` is the steps per round.
      run_dir: where round_NNN/{samples.jsonl, train/} go.
      sampler: a `Sampler` on `student` (its weights follow the student's, round by round).
      teacher: the frozen teacher; default: `student`'s weights as passed in (no copy: the
        rounds replace the student's arrays, not these).
      teacher_tokenizer: renders `teacher_messages`; default `tokenizer`.
      log: where a line per round goes.
    """
    if not train.kd.enabled or not train.steps:
        raise S2JaxError(f"on-policy distillation: train.kd.divergence={train.kd.divergence}, "
                         f"train.steps={train.steps}; expected a divergence (reverse_kl or jsd) "
                         "and a number of steps per round")
    if not prompts:
        raise S2JaxError("on-policy distillation: no prompts")
    run_dir = Path(run_dir)
    dirs = [run_dir / f"round_{r:03d}" for r in range(config.rounds)]
    finished = [r for r in range(config.rounds) if _done(dirs[r])]
    start = finished[-1] + 1 if finished else 0
    if finished and finished != list(range(start)):
        raise S2JaxError(f"{run_dir}: rounds {finished} are finished but not in order; "
                         "use a new run dir")
    # the teacher by default: the student as passed in, before any round (a resumed run
    # passes the same model); its arrays stay alive while rounds replace the student's
    teacher = teacher if teacher is not None else Weights(student.config,
                                                          dict(student.params()))
    if start:
        _load_weights(student, dirs[start - 1] / "train" / "model")
    for r in range(start, config.rounds):
        sampler.set_params(student.params())  # this round samples from the current weights
        samples = _sample(sampler, round_prompts(prompts, config, r), config,
                          dirs[r] / "samples.jsonl")
        examples = _examples(round_prompts(prompts, config, r), samples)
        round_train = dataclasses.replace(train, seed=train.seed + r, export=True)
        finetune(student, tokenizer, examples, round_train, dirs[r] / "train", teacher=teacher,
                 teacher_tokenizer=teacher_tokenizer)
        loss = json.loads((dirs[r] / "train" / "summary.json").read_text()).get("loss")
        log(f"on-policy round {r + 1}/{config.rounds}: last step's loss {loss} on "
            f"{len(examples)} samples")
    sampler.set_params(student.params())
    return student
