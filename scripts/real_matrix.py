"""The retention matrix of a finished real run: the base and the distilled model on the held-out
test countries under every template (the one distilled on and the ones not), other tasks, and the
run's System 2 method run by the distilled model on the run's test inputs.
Writes <run_dir>/matrix.json.

  PYTHONPATH=$PWD python3 scripts/real_matrix.py RUN_DIR [--other last_letter,coin_flip]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import s2jax
from s2jax.core.atomic import write_json
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.evaluate import evaluate
from s2jax.methods.catalog import SYSTEM1, method
from s2jax.run.config import DataConfig
from s2jax.run.pipeline import task_examples
from s2jax.sampling import Sampler
from s2jax.tasks import TASKS, load_examples

TEMPLATES = ("bare", "suggest_incorrect", "suggest_correct", "doubt_correct")


def columns(config: dict, others: list[str], limit: int | None):
    """(column name, task, method, examples) of the matrix: System 1 on the held-out countries
    under every template, System 1 on the other tasks, and the run's System 2 method on its own
    test inputs (does the distilled model still reason when prompted?)."""
    seed = config["test"]["seed"]
    split = (config["test"]["split"] or "test").partition(":")[0]
    cap = TASKS["capitals"]
    cols = [(f"S1 {t}", "capitals", SYSTEM1,
             load_examples(cap, split=f"{split}:{t}", seed=seed, limit=limit)) for t in TEMPLATES]
    for name in others:
        task = TASKS[name]
        exs = (load_examples(task, split=split, seed=seed, limit=limit or 40) if task.splits
               else task.synthesize(limit or 40, 2))
        cols.append((f"S1 {name}", name, SYSTEM1, exs))
    own = TASKS[config["task"]]
    test = DataConfig(**{k: v for k, v in config["test"].items()
                         if k in {f.name for f in dataclasses.fields(DataConfig)}})
    exs = task_examples(own, test, "test")[:limit]
    label = "" if config["task"] == "capitals" else f" {config['task']}"
    cols.append((f"{config['method']}{label} ({test.split or 'test'})", config["task"],
                 config["method"], exs))
    return cols


def _same_base_row(source: Path, config: dict, columns: list[str]) -> dict | None:
    """The base row of `source`'s matrix, if it has one over the same columns, model and
    evaluation settings; else None."""
    if not (source / "matrix.json").is_file():
        return None
    old = json.loads((source / "config.json").read_text())["config"]
    matrix = json.loads((source / "matrix.json").read_text())
    same = all(old.get(k) == config.get(k) for k in ("model", "dtype", "test", "eval_sampling",
                                                      "chat", "max_len", "task", "method"))
    return matrix["rows"]["base"] if same and matrix["columns"] == columns else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--other", default="last_letter,coin_flip")
    ap.add_argument("--limit", type=int, default=None, help="inputs per column")
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    config = json.loads((run_dir / "config.json").read_text())["config"]
    cols = columns(config, [o for o in args.other.split(",") if o], args.limit)
    params = SamplingParams(**config["eval_sampling"])
    out = {"run_dir": str(run_dir), "columns": [c[0] for c in cols], "rows": {}}
    model, tokenizer = s2jax.load(config["model"], dtype=config["dtype"])
    sampler = Sampler(model, tokenizer, max_batch=config["max_batch"],
                      max_len=config["max_len"], chat=config["chat"])
    distilled, _ = s2jax.load(run_dir / "train" / "model", dtype=config["dtype"])
    # a run re-filtered from another run's generations (scripts/real_refilter.py) has the same
    # base model and evaluation config: its base row is that run's, when it has one
    source = json.loads((run_dir / "results.json").read_text()).get("generations_from")
    base = _same_base_row(Path(source), config, out["columns"]) if source else None
    if base is not None:
        out["rows"]["base"] = base
        out["base_from"] = source
        print(f"base row from {source}/matrix.json", flush=True)
    rows = [("base", model.params()), ("distilled", distilled.params())][base is not None:]
    for row, params_of in rows:
        sampler.set_params(params_of)
        cells = {}
        for name, task, meth, exs in cols:
            start = time.perf_counter()
            program = method(meth, TASKS[task].system1)
            r = evaluate(row, program, TASKS[task], exs, sampler, params, chat=config["chat"])
            cells[name] = r.to_json()
            print(f"{row:9s} {name:22s} {r.accuracy:5.1f}% {r.tokens_per_answer:6.1f} tok "
                  f"({r.examples} inputs, {r.abstentions} abstained, "
                  f"{time.perf_counter() - start:.0f} s)", flush=True)
        out["rows"][row] = cells
    write_json(run_dir / "matrix.json", out)


if __name__ == "__main__":
    main()
