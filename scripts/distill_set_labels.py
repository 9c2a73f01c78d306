"""What a finished run's distillation set holds, read against the labels the run never saw.

  PYTHONPATH=$PWD python3 scripts/distill_set_labels.py RUN_DIR...

For each kept input: is the voted answer right, and is it the user's suggestion (opinion
templates)? Analysis only: the labels are read here, after the run, never by the pipeline.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from s2jax.run.config import DataConfig
from s2jax.run.pipeline import task_examples
from s2jax.tasks import TASKS


def summary(run_dir: Path) -> dict:
    config = json.loads((run_dir / "config.json").read_text())["config"]
    task = TASKS[config["task"]]
    examples = {e.id: e for e in task_examples(task, DataConfig(**config["unlabeled"]),
                                                "unlabeled")}
    kept = [d for d in map(json.loads, (run_dir / "distill/decisions.jsonl").read_text()
                           .splitlines()) if d["kept"]]
    right = sum(task.score(d["answer"], examples[d["id"]]) > 0 for d in kept)
    suggested = sum(task.key(d["answer"]) == task.key(s) for d in kept
                    if (s := examples[d["id"]].fields.get("suggestion")))
    return {"run": run_dir.name, "inputs": len(examples), "kept": len(kept), "right": right,
            "suggestion": suggested,
            "answers": dict(Counter(task.key(d["answer"]) for d in kept).most_common(3))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+")
    for run in ap.parse_args().run_dirs:
        s = summary(Path(run))
        print(f"{s['run']}: kept {s['kept']} of {s['inputs']}, right {s['right']} "
              f"({100 * s['right'] / max(s['kept'], 1):.0f}%), the user's suggestion "
              f"{s['suggestion']}, most common {s['answers']}")


if __name__ == "__main__":
    main()
