"""Wall time of an 8-arm ablation as one `s2jax sweep` against 8 separate `s2jax run`s.

    python bench/sweep.py [--test 100] [--unlabeled 128] [--n 4] [--steps 40,80] [--workers 1]

The grid of issue 21 on the toy world's coin_flip task (the shipped model, CPU): vote threshold
{0.5, 0.75} x fine-tuning steps x LoRA rank {0, 8}. Separately, each arm is its own process
(`s2jax run CONFIG --set ...`): it evaluates the base model, samples System 2 and votes again.
As a sweep, those stages run once and the 8 fine-tunes and evaluations reuse them. Both sides
start with the persistent compilation cache off, so each process compiles what it needs; both
write to fresh directories. The target is sweep <= 1/3 of the separate runs' time. Afterwards
the distilled accuracies of the two are compared: they must be equal (a sweep computes the
same stages, keyed only by what determines them), answer by answer.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = '''
from s2jax.core.text_generator import SamplingParams
from s2jax.run.config import DataConfig, ExperimentConfig
from s2jax.toy.demo import base_model_dir
from s2jax.train.config import TrainConfig

GRID = {grid!r}


def get_config(arg=None):
    return ExperimentConfig(
        name="bench", model=str(base_model_dir()), task="toy/coin_flip", method="rar_1step",
        unlabeled=DataConfig(synthetic={unlabeled}, seed=2),
        test=DataConfig(synthetic={test}, seed=1),
        sampling=SamplingParams(n={n}, temperature=0.7, top_k=40, max_new_tokens=128),
        eval_sampling=SamplingParams(max_new_tokens=128),
        train=TrainConfig(steps=80, seq_len=128, batch_size=8, learning_rate=1e-3,
                          schedule="constant"),
        max_batch=64, max_len=512)


def sweep():
    return {{name: dict(sets) for name, sets in GRID.items()}}
'''


def grid(steps: list[int]) -> dict[str, dict]:
    return {f"t{t}_s{s}_r{r}": {"distill.vote.threshold": t, "train.steps": s,
                                "train.warmup_steps": min(10, s // 4),
                                "train.lora.rank": r, "train.lora.alpha": 2.0 * r,
                                "train.learning_rate": 1e-2 if r else 1e-3}
            for t, s, r in itertools.product((0.5, 0.75), steps, (0, 8))}


def _run(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "S2JAX_COMPILATION_CACHE": "off"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "s2jax.cli", *argv], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--unlabeled", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", default="40,80")
    ap.add_argument("--workers", type=int, default=1, help="sweep workers (local processes)")
    args = ap.parse_args()
    arms = grid([int(s) for s in args.steps.split(",")])
    with tempfile.TemporaryDirectory(prefix="s2jax-bench-sweep-") as tmp:
        tmp = Path(tmp)
        config = tmp / "grid.py"
        config.write_text(CONFIG.format(grid=arms, unlabeled=args.unlabeled, test=args.test,
                                        n=args.n))
        separate = 0.0
        for name, sets in arms.items():
            sec = _run(["run", str(config), "--run-dir", str(tmp / "separate" / name),
                        "--no-progress", *(x for k, v in sets.items()
                                           for x in ("--set", f"{k}={v}"))])
            print(f"  s2jax run ({name}): {sec:.1f} s", flush=True)
            separate += sec
        swept = _run(["sweep", str(config), "--root", str(tmp / "sweep"), "--no-progress",
                      "--workers", str(args.workers)])
        answers = {side: {a: [json.loads(line)["answer"] for line in (
            tmp / side / a / "eval" / "distilled.jsonl").read_text().splitlines()]
            for a in arms} for side in ("separate", "sweep")}
        distilled = {a: json.loads((tmp / "sweep" / a / "results.json").read_text())[
            "rows"][2]["accuracy"] for a in arms}
    same = answers["separate"] == answers["sweep"]
    print(f"8 separate runs: {separate:.1f} s; one sweep ({args.workers} worker(s)): "
          f"{swept:.1f} s; ratio {swept / separate:.2f} (target <= 0.33); the distilled models' "
          f"answers item by item equal: {same}; accuracies {distilled}")


if __name__ == "__main__":
    main()
