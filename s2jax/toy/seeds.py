"""`s2jax demo --seeds K`: the demo once per seed, and its table over the seeds.

Seed s is `s2jax demo --seed s` into OUT/seed<s>/ (its own results.json, table.md and one run
dir per task), for s = seed .. seed + K - 1. `DemoConfig.seed` keys System 2's samples (sample i
of input x draws from (seed, x, i)), hence the votes and the distillation set, and the
fine-tuning's data order (a permutation per epoch) and, with LoRA, the adapters' init. The
inputs (held-out and unlabeled), the base model and the greedy evaluations of System 1 and
System 2 do not depend on it, so those two rows are the same for every seed.

Under OUT/:

    report.{md,json,png}    `s2jax report` over the K x tasks run dirs: per seed, each system's
                            accuracy (Wilson) and the paired distilled - System 1 and
                            distilled - System 2 intervals; per task, mean +- sd over seeds
    results.json            per task: every seed's figures, mean +- sd, and the reading
    table.md                the table (README's demo section)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from s2jax.core.atomic import atomic_open, write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import DEMO, check_dir, claim_dir
from s2jax.report import arms_of, report_root
from s2jax.toy.demo import DemoConfig, run_demo

SYSTEMS = ("system1", "system2", "distilled")
MAX_SEEDS = 100


def seed_dirs(out: Path, config: DemoConfig, seeds: int) -> dict[int, Path]:
    """{seed: its demo's output directory}."""
    return {s: out / f"seed{s}" for s in range(config.seed, config.seed + seeds)}


def reading(intervals: list[dict | None]) -> str:
    """Whether a task distils, from each seed's paired distilled - System 1 interval (None: the
    seed kept nothing to distil)."""
    above = sum(i is not None and i["low"] > 0 for i in intervals)
    if above == len(intervals):
        return "distils"  # every seed's interval lies above 0
    if above == 0:
        return "does not distil"  # no seed's interval excludes 0 from above
    return "unclear"


def _figure(group: dict, key: str) -> dict | None:
    return group["figures"].get(key)  # absent where a seed has no such row (nothing kept)


def task_summary(name: str, report: dict, arms: dict[int, str], demo: dict) -> dict:
    """One task's figures over seeds, from the report (its seed group and per-seed arms)."""
    split = report["splits"][0]
    entries = {e["arm"]: e for e in split["arms"]}
    group = next((g for g in split["seed_groups"] if set(g["arms"]) == set(arms.values())),
                 None)
    if group is None:
        raise S2JaxError(f"demo seeds: the report holds no seed group of task {name}'s arms "
                         f"{sorted(arms.values())} (expected one recipe differing by seed)")
    per_seed = {}
    for seed, arm in arms.items():
        e = entries[arm]
        paired = e["paired"].get("system1")
        per_seed[str(seed)] = {
            **{s: {k: e["systems"][s][k] for k in ("accuracy", "tokens_per_answer")}
               for s in SYSTEMS if s in e["systems"]},
            "vs_system1": paired and {k: paired[k] for k in ("difference", "low", "high")},
            "kept": demo[str(seed)]["tasks"][name]["distill_set"]["kept"]}
    out = {"method": demo[str(next(iter(arms)))]["tasks"][name]["method"],
           "seeds": per_seed,
           **{f"{kind}:{s}": _figure(group, f"{kind}:{s}")
              for kind in ("accuracy", "tokens_per_answer") for s in SYSTEMS},
           **{f"difference:{s}": _figure(group, f"difference:{s}")
              for s in ("system1", "system2")}}
    intervals = [p["vs_system1"] for p in per_seed.values()]
    out["above_zero"] = sum(i is not None and i["low"] > 0 for i in intervals)
    out["reading"] = reading(intervals)
    return out


def _mean_sd(figure: dict | None, digits: int = 1) -> str:
    if figure is None:
        return "n/a"
    sd = figure["sd"] or 0.0
    return f"{figure['mean']:.{digits}f} ± {sd:.{digits}f}"


def _interval(p: dict | None) -> str:
    return "n/a" if p is None else f"{p['difference']:+.0f} [{p['low']:+.0f}, {p['high']:+.0f}]"


def seeds_table(results: dict) -> str:
    """The markdown table: per task, mean +- sd over seeds, every seed's distilled accuracy and
    paired distilled - System 1 interval, and the reading."""
    level = round(100 * results["level"])
    lines = ["| task (method) | System 1 % | System 2 % | distilled % | distilled % per seed | "
             f"tokens / answer S1 / S2 / distilled | distilled - System 1, points [{level}% "
             "paired interval] per seed | distilled - System 2, points | reading (seeds whose "
             "interval is above 0) |",
             "|---|---:|---:|---:|---|---|---|---:|---|"]
    for name, t in results["tasks"].items():
        per = t["seeds"].values()
        accs = " / ".join(f"{p['distilled']['accuracy']:.0f}" if "distilled" in p else "-"
                          for p in per)
        tokens = " / ".join(_mean_sd(t[f"tokens_per_answer:{s}"]) for s in SYSTEMS)
        intervals = "; ".join(_interval(p["vs_system1"]) for p in per)
        lines.append(f"| {name} ({t['method']}) | {_mean_sd(t['accuracy:system1'])} | "
                     f"{_mean_sd(t['accuracy:system2'])} | {_mean_sd(t['accuracy:distilled'])}"
                     f" | {accs} | {tokens} | {intervals} | {_mean_sd(t['difference:system2'])}"
                     f" | {t['reading']} ({t['above_zero']}/{len(per)}) |")
    seeds = ", ".join(results["seeds"])
    lines.append(f"\nSeeds {seeds} (mean ± sample sd over seeds; per-seed columns in seed "
                 f"order). This invocation: {results['seconds']:.0f} s (a seed finished "
                 "before is read back, not rerun)")
    return "\n".join(lines)


def run_demo_seeds(out: str | Path, config: DemoConfig, seeds: int, *,
                   model_dir: str | Path | None = None, progress: bool = True,
                   log=print) -> dict:
    """Runs (or resumes) the demo for `seeds` seeds from `config.seed` and writes the table.

    Args:
      out: output directory; seed s's demo is `out/seed<s>`.
      config: sizes (its seed is the first seed).
      seeds: how many seeds (>= 2: one seed is `run_demo`).
      model_dir: base model (default: the shipped one).
      progress: tqdm bars on stderr.
      log: where the tables go.

    Returns:
      The results (as written to `out/results.json`).
    """
    if not 2 <= seeds <= MAX_SEEDS:
        raise S2JaxError(f"demo --seeds {seeds}: expected 2..{MAX_SEEDS} (1: plain demo)")
    start = time.perf_counter()
    check_dir(out, "--out", DEMO)
    out = claim_dir(out, "--out", DEMO)
    dirs = seed_dirs(out, config, seeds)
    demo = {}
    for seed, path in dirs.items():
        log(f"seed {seed}: {path}")
        demo[str(seed)] = run_demo(path, dataclasses.replace(config, seed=seed),
                                   model_dir=model_dir, progress=progress, log=log)
    arm_dirs = {(name, seed): path / name for seed, path in dirs.items() for name in config.tasks}
    arms = arms_of(list(arm_dirs.values()), out)
    report, _ = report_root(out, arms=arms)
    names = {a.path: a.name for a in arms}
    results = {"config": dataclasses.asdict(config), "seeds": [str(s) for s in dirs],
               "level": report["settings"]["level"], "tasks": {}}
    for name in config.tasks:
        mine = {seed: names[str(arm_dirs[name, seed].relative_to(out))] for seed in dirs}
        results["tasks"][name] = task_summary(name, report, mine, demo)
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_json(out / "results.json", results)
    text = seeds_table(results)
    with atomic_open(out / "table.md") as f:
        f.write(text + "\n")
    log(text)
    return results
