"""System 1 of the base model and of several distilled models of one config on the validation
countries (never used by distillation or the test tables): how to choose between recipes
without reading the test split.

  PYTHONPATH=$PWD python3 scripts/real_validation.py RUN_DIR... [--templates suggest_incorrect,bare]

All runs must share the model and evaluation settings (the first run's are used).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import s2jax
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.evaluate import evaluate
from s2jax.methods.catalog import SYSTEM1, method
from s2jax.sampling import Sampler
from s2jax.tasks import TASKS, load_examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--templates", default="suggest_incorrect,bare")
    args = ap.parse_args()
    runs = [Path(r) for r in args.run_dirs]
    config = json.loads((runs[0] / "config.json").read_text())["config"]
    task = TASKS[config["task"]]
    seed = config["test"]["seed"]
    columns = {t: load_examples(task, split=f"validation:{t}", seed=seed)
               for t in args.templates.split(",")}
    params = SamplingParams(**config["eval_sampling"])
    model, tokenizer = s2jax.load(config["model"], dtype=config["dtype"])
    sampler = Sampler(model, tokenizer, max_batch=config["max_batch"],
                      max_len=config["max_len"], chat=config["chat"])
    program = method(SYSTEM1, task.system1)
    print("| model | " + " | ".join(f"S1 {t} (validation, {len(e)})" for t, e in columns.items())
          + " |\n|---|" + "---:|" * len(columns))
    for name, run in [("base", None), *[(r.name, r) for r in runs]]:
        if run is not None:
            sampler.set_params(s2jax.load(run / "train" / "model", dtype=config["dtype"])[0]
                               .params())
        cells = [evaluate(name, program, task, exs, sampler, params, chat=config["chat"])
                 for exs in columns.values()]
        print(f"| {name} | " + " | ".join(f"{r.accuracy:.1f} ({r.tokens_per_answer:.0f} tok)"
                                         for r in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
