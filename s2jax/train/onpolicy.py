"""On-policy distillation: the student samples its own answers with its current weights, a
frozen teacher scores those tokens, and the student moves toward the teacher's distribution
on them (reverse KL or GKD's JSD, `TrainConfig.kd`), for a set number of rounds.

Each round is one short `finetune` in `run_dir/round_NNN/` on the round's samples, which are
written there first (`samples.jsonl`, atomically): a killed run resumes in its last round from
that round's checkpoint and samples, after reloading the weights the previous round exported,
so it sees the same samples and batches as an uninterrupted run. The sampler takes each
round's new weights with `set_params` (same shapes: no recompilation). Adam's moments start
afresh every round. With LoRA the adapters carry over from round to round on a base that never
changes, so the default teacher (the base, adapters off) costs no second copy of the weights;
a resumed LoRA run reads the last finished round's adapter/ back, as an uninterrupted one does.

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
from s2jax.models.loading import load
from s2jax.models.lora import load_peft, merge
from s2jax.models.projection import LORA_SCALE
from s2jax.models.weights import Weights
from s2jax.parallel.sharding import mesh_of
from s2jax.train.config import OnPolicyConfig, TrainConfig
from s2jax.train.loop import finetune


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


def _done(round_dir: Path, lora: bool) -> bool:
    train = round_dir / "train"
    return (train / "summary.json").is_file() and (train / "model" / "config.json").is_file() \
        and (not lora or (train / "adapter" / "adapter_config.json").is_file())


def _set_weights(model, params: dict) -> None:
    """Puts `params` into `model`, each in the dtype and on the sharding `model` holds it."""
    for name, value in params.items():
        old = model.param(name).get_value()
        model.param(name).set_value(jax.device_put(value.astype(old.dtype), old.sharding))
    model.identity = None  # no longer the files' it was loaded from (as finetune's write-back)


def _restore(model, base: dict, identity: str | None) -> None:
    """Gives `model` back the very arrays of `base` (no copy): a LoRA student between rounds."""
    for name, value in base.items():
        model.param(name).set_value(value)
    model.identity = identity


def _round_adapters(model, round_dir: Path) -> dict:
    """The adapters a LoRA round exported (with their scale), on the model's mesh."""
    mesh = mesh_of(next(iter(model.params().values())))
    return load_peft(model.config, round_dir / "train" / "adapter", mesh=mesh)[1]


def _first_round(dirs: Sequence[Path], lora: bool, run_dir: Path) -> int:
    """The first round not finished; the finished ones must be the rounds before it."""
    finished = [r for r, d in enumerate(dirs) if _done(d, lora)]
    start = finished[-1] + 1 if finished else 0
    if finished and finished != list(range(start)):
        raise S2JaxError(f"{run_dir}: rounds {finished} are finished but not in order; "
                         "use a new run dir")
    return start


def _check(train: TrainConfig, prompts: Sequence[dict]) -> None:
    if not train.kd.enabled or not train.steps:
        raise S2JaxError(f"on-policy distillation: train.kd.divergence={train.kd.divergence}, "
                         f"train.steps={train.steps}; expected a divergence (reverse_kl or jsd) "
                         "and a number of steps per round")
    if not prompts:
        raise S2JaxError("on-policy distillation: no prompts")


def _resume(student, last: Path, lora: bool) -> dict | None:
    """The state a resumed run left after round `last`: with LoRA its adapters (the student
    keeps its base), else its exported weights, put into the student."""
    if lora:
        return _round_adapters(student, last)
    _set_weights(student, load(last / "train" / "model")[0].params())
    return None


def distill_on_policy(student, tokenizer, prompts: Sequence[dict], config: OnPolicyConfig,
                      train: TrainConfig, run_dir: str | Path, *, sampler, teacher=None,
                      teacher_tokenizer=None, log=print):
    """Runs (or resumes) the rounds; returns the student holding the final weights.

    With LoRA (`train.lora`) the student is its base plus adapters that carry over from round
    to round (each round's optimizer starts afresh): the base arrays are the default teacher's
    too, so the train step holds one copy of the weights; only while a round samples does the
    sampler hold the merged weights beside them. The student ends holding the merged weights.

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
        rounds replace the student's arrays, not these; with LoRA, the base without adapters).
      teacher_tokenizer: renders `teacher_messages`; default `tokenizer`.
      log: where a line per round goes.
    """
    _check(train, prompts)
    run_dir, lora = Path(run_dir), train.lora.enabled
    dirs = [run_dir / f"round_{r:03d}" for r in range(config.rounds)]
    start = _first_round(dirs, lora, run_dir)
    # the student as passed in, before any round (a resumed run passes the same model): the
    # default teacher, and with LoRA the frozen base of every round
    base, identity = dict(student.params()), getattr(student, "identity", None)
    teacher = teacher if teacher is not None else Weights(student.config, base)
    adapters = _resume(student, dirs[start - 1], lora) if start else None
    for r in range(start, config.rounds):
        # this round samples from the current weights (with LoRA merged for the sampler alone)
        sampler.set_params(merge({**base, **adapters}) if adapters else student.params())
        samples = _sample(sampler, round_prompts(prompts, config, r), config,
                          dirs[r] / "samples.jsonl")
        if lora:
            sampler.set_params(base)  # the merged copy goes before the train step
        examples = _examples(round_prompts(prompts, config, r), samples)
        round_train = dataclasses.replace(train, seed=train.seed + r, export=True)
        # every round's step compiled for whole rows: the rounds share one compilation
        finetune(student, tokenizer, examples, round_train, dirs[r] / "train", teacher=teacher,
                 teacher_tokenizer=teacher_tokenizer, adapters=adapters and {
                     k: v for k, v in adapters.items() if k != LORA_SCALE},
                 reach=round_train.seq_len)
        if lora:  # finetune merged the adapters into the student: back to the base
            adapters = _round_adapters(student, dirs[r])
            _restore(student, base, identity)
        loss = json.loads((dirs[r] / "train" / "summary.json").read_text()).get("loss")
        log(f"on-policy round {r + 1}/{config.rounds}: last step's loss {loss} on "
            f"{len(examples)} samples")
    if adapters:
        _set_weights(student, merge({**base, **adapters}))
    sampler.set_params(student.params())
    return student
