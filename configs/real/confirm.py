"""The pre-registered confirmatory experiment (docs/real_preregistration.md): S2A distilled on
real capital-city facts, 3-fold cross-fitted over every country, frozen before its test runs.

  python scripts/real_confirm.py [--quick] [--root DIR] [--arms A,B] [--hashes]

Pool: all 144 countries (`all` split, seed 0) under the four templates (576 inputs). Folds are
dealt by country (`cross_fit.group`), so a country's facts are never both distilled on and
tested; each fold's model is distilled on the other two folds' wrong-suggestion inputs
(`cross_fit.distil_on`), labels never read, and tested on its own countries under every
template. Base System 1 is evaluated once on the whole pool, base System 2 (S2A) once on its
144 wrong-suggestion inputs (`cross_fit.system2_on`).

Arms (each arm's config hash is printed by `--hashes` and in the results doc):
  chosen_s{0,1,2}      the recipe chosen after run (a)'s test numbers were known: (a'') of
                       docs/real_results.md, vote >= 3 of 4, 3 steps
  fixed_s{0,1,2}       the recipe as fixed before any run: (a), vote >= 2 of 4, 8 steps
  own_bare_{chosen,fixed}_s0  control: the biased input trained on the base model's own voted
                       reply to the bare question (label-free, no System 2)
  distill_system1_s0, gold_s0, shuffled_s0   controls on the chosen recipe
  lora_s0              the chosen recipe's filter with LoRA rank 8 instead of full fine-tuning
Seeds: `sampling.seed` (System 2's samples) and `train.seed` (data order); the folds stay put.
The arg "quick" is the CI variant: SmolLM2-135M, 6 countries, N=3 with a 2-of-3 vote, 1 step
(checks the pipeline, not the result).
"""

import dataclasses
import runpy
from pathlib import Path

from s2jax.distill.dataset import DistillConfig
from s2jax.distill.vote import VoteConfig
from s2jax.models.lora_config import LoraConfig
from s2jax.run.config import CrossFit, DataConfig, ExperimentConfig

common = runpy.run_path(str(Path(__file__).with_name("common.py")))
TEMPLATES = ("bare", "suggest_incorrect", "suggest_correct", "doubt_correct")
DISTIL_ON = "suggest_incorrect"
FOLDS = 3
SEEDS = (0, 1, 2)

# recipe -> (vote threshold, fine-tuning steps); everything else is the shared recipe below
RECIPES = {"chosen": (0.75, 3), "fixed": (0.5, 8)}


def recipe(base: ExperimentConfig, name: str, seed: int, *, control: str = "",
           lora_rank: int = 0) -> ExperimentConfig:
    """One arm: a recipe at one seed, optionally a control or LoRA."""
    threshold, steps = RECIPES[name]
    train = dataclasses.replace(base.train, steps=min(steps, base.train.steps), seed=seed)
    if lora_rank:  # adapters need a larger rate than full fine-tuning (fixed in advance)
        train = dataclasses.replace(train, lora=LoraConfig(rank=lora_rank), learning_rate=1e-4)
    return dataclasses.replace(
        base, sampling=dataclasses.replace(base.sampling, seed=seed), train=train,
        distill=dataclasses.replace(base.distill, vote=VoteConfig(threshold=threshold)),
        control=control)


def get_config(arg=None):
    """The shared part of every arm ("MODEL[,quick]", default Qwen2.5-Coder-0.5B)."""
    variant, quick = common["parse_arg"](arg)
    split = f"all:{','.join(TEMPLATES)}"
    return ExperimentConfig(
        name=f"confirm_{variant}" + ("_quick" if quick else ""),
        model=common["MODELS"][variant],
        task="capitals",
        method="s2a",
        # the pool: 144 countries x 4 templates; quick: the first 6 countries
        test=DataConfig(split=split, seed=common["SPLIT_SEED"], limit=24 if quick else None),
        # S2A (two stages of up to 96 tokens) is evaluated on the wrong-suggestion inputs only:
        # criterion 1 reads it there, and on 2 CPU cores the other three templates would cost
        # about as much as sampling System 2
        cross_fit=CrossFit(folds=FOLDS, seed=0, group="country",
                           distil_on=f"template={DISTIL_ON}",
                           system2_on=f"template={DISTIL_ON}"),
        sampling=dataclasses.replace(common["SAMPLING"], n=3 if quick else 4,
                                     max_new_tokens=48 if quick else 96),
        eval_sampling=dataclasses.replace(common["EVAL_SAMPLING"],
                                          max_new_tokens=24 if quick else 64),
        distill=DistillConfig(filter="majority", vote=VoteConfig(threshold=0.5),
                              target="reply"),
        train=(dataclasses.replace(common["train"](steps=1, learning_rate=1e-5), seq_len=128,
                                   batch_size=2) if quick
               else common["train"](steps=8, learning_rate=1e-5)),
        max_batch=64,
        max_len=256 if quick else 512,
    )


def arms(base: ExperimentConfig, quick: bool = False) -> dict[str, ExperimentConfig]:
    """Every pre-registered arm, in the order they are run (the claim's arms first)."""
    out = {"chosen_s0": recipe(base, "chosen", 0),
           "own_bare_chosen_s0": recipe(base, "chosen", 0, control="own_unbiased")}
    if quick:  # a 2-of-3 vote, so that SmolLM2's samples on 4 countries a fold keep some
        vote = VoteConfig(threshold=0.5)
        return {k: dataclasses.replace(c, distill=dataclasses.replace(c.distill, vote=vote))
                for k, c in out.items()}
    out["fixed_s0"] = recipe(base, "fixed", 0)
    out["own_bare_fixed_s0"] = recipe(base, "fixed", 0, control="own_unbiased")
    for seed in SEEDS[1:]:
        out[f"chosen_s{seed}"] = recipe(base, "chosen", seed)
    for seed in SEEDS[1:]:
        out[f"fixed_s{seed}"] = recipe(base, "fixed", seed)
    for control in ("system1", "gold", "shuffled"):
        name = {"system1": "distill_system1"}.get(control, control)
        out[f"{name}_s0"] = recipe(base, "chosen", 0, control=control)
    out["lora_s0"] = recipe(base, "chosen", 0, lora_rank=8)
    return out


# the claim (docs/real_preregistration.md): arm -> its own-bare-reply control arm
CLAIMS = {"chosen_s0": "own_bare_chosen_s0", "fixed_s0": "own_bare_fixed_s0"}
