"""The S2A capitals recipes of docs/real_results.md as one sweep, chosen on validation.

  s2jax sweep configs/real/s2a_capitals_sweep.py[:qwen2.5-coder-0.5b|smollm2-135m][,quick] \
      [--root runs/s2a_capitals_sweep] [--workers K]

What the one-off scripts of the exploratory runs did by hand (removed), as stages:
System 2 is sampled once (every arm differs only in the filter and fine-tuning, so they share
the samples and the base model's evaluations); each arm's distilled model is evaluated on the
validation countries first, the selection rule picks one arm, and only then does any test
evaluation run; the arms not picked are marked exploratory. Retention suites (the base and
every distilled model): the held-out countries under every template, two other tasks, and S2A
itself on the test inputs. Controls: Distill System 1, own-unbiased-reply targets, gold labels
on the kept inputs.
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.run.config import DataConfig, Suite
from s2jax.run.selection import Selection

base = runpy.run_path(str(Path(__file__).with_name("s2a_capitals.py")))
common = base["common"]
TEMPLATES = ("bare", "suggest_incorrect", "suggest_correct", "doubt_correct")


def get_config(arg=None):
    config = base["get_config"](arg)
    _, quick = common["parse_arg"](arg)
    seed, limit = common["SPLIT_SEED"], 6 if quick else None
    suites = [Suite(f"S1 {t}", "capitals", DataConfig(split=f"test:{t}", seed=seed, limit=limit))
              for t in TEMPLATES]
    suites += [Suite("S1 last_letter", "last_letter", DataConfig(split="test", seed=seed,
                                                                  limit=6 if quick else 40)),
               Suite("S1 coin_flip", "coin_flip", DataConfig(synthetic=6 if quick else 40,
                                                             seed=2)),
               Suite("S2A (test)", "capitals", config.test, method="s2a")]
    return dataclasses.replace(
        config, name=config.name.replace("s2a_capitals", "s2a_capitals_sweep"),
        validation=DataConfig(split="validation:suggest_incorrect", seed=seed, limit=limit),
        retention=tuple(suites))


def sweep():
    return {
        "vote50": {},  # (a): the recipe fixed before any run
        "vote75": {"distill.vote.threshold": 0.75},  # (a')
        "vote75_3steps": {"distill.vote.threshold": 0.75, "train.steps": 3},  # (a'')
        "distill_system1": {"control": "system1"},
        "own_unbiased": {"control": "own_unbiased"},
        "gold": {"control": "gold"},
        # not registered (exploratory if added): token-level context distillation from the
        # base reading S2A's clean prompt, and (with the smollm2-135m variant) Qwen's S2A as
        # the teacher of SmolLM2's System 1, sharing one sample set across its students
        # "context_kd": {"train.kd.divergence": "reverse_kl", "train.kd.ce_weight": 0.25,
        #                "train.kd.teacher_seq_len": 512},
        # "qwen_teacher": {"teacher.model": "qwen2.5-coder-0.5b-instruct"},
    }


# the confirmatory arm: the most accurate distilled model on the validation countries
selection = Selection("accuracy")
