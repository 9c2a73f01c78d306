"""Tables and accuracy-tokens curves of stepwise-internalization runs, beside their baselines.

`toy_table`: `s2jax demo --tokens-per-stage ...` results (one per seed) against answer-only demo
results of the same seeds. `multiply_table`: `s2jax toy multiply` results, both arms (and, with
`paper`, Deng et al.'s figures). Each returns the markdown table and `s2jax.toy.report.curve`'s
input; `write_stepwise_report` writes both. `scripts/stepwise_report.py` is the command line.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from s2jax.core.atomic import atomic_open
from s2jax.toy.report import curve

# Deng, Choi & Shieber 2024: GPT-2 small, stepwise internalization, no trace tokens at test time
# (their repository's README), and the abstract's "standard training cannot solve beyond 4-by-4".
PAPER = {4: 100.0, 5: 100.0, 7: 95.0, 9: 99.0, 11: 74.0}


def load_results(path: str | Path) -> dict:
    """A run's results.json (given the file or the run directory)."""
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    return json.loads(path.read_text())


def best_short(stages: list[dict], max_tokens: float) -> dict | None:
    """The most accurate stage at <= max_tokens generated tokens per answer (None: none)."""
    short = [s for s in stages if s["tokens_per_answer"] <= max_tokens]
    return max(short, key=lambda s: s["accuracy"]) if short else None


def _cell(row: dict) -> str:
    return f"{row['accuracy']:.1f} ({row['tokens_per_answer']:.1f})"


def toy_table(task: str, stepwise: list[dict], answer: list[dict | None] | None = None,
              max_tokens: float = 10.0) -> tuple[str, dict]:
    """One row per seed: System 1, System 2, answer-only distillation, stepwise stage 0, its last
    stage and its best stage at <= `max_tokens` tokens; then the means over seeds.

    Args:
      task: the toy task.
      stepwise: demo results.json contents with a curriculum, one per seed.
      answer: answer-only demo results of the same seeds, in the same order (None: no column).
      max_tokens: the token bound of the "best" column.
    """
    lines = [f"| seed | System 1 | System 2 (tokens) | answer-only distilled (tokens) | stepwise "
             f"stage 0: full trace (tokens) | stepwise, last stage (tokens) | best stepwise "
             f"<= {max_tokens:g} tokens (stage) |", "|---|---:|---:|---:|---:|---:|---:|"]
    curves, finals, answers = {}, [], []
    for run, ans_run in zip(stepwise, answer or [None] * len(stepwise), strict=True):
        row, seed = run["tasks"][task], run["config"]["seed"]
        stages, s1, s2 = row["curriculum"], row["system1"], row["system2"]
        ans = ans_run["tasks"][task]["distilled"] if ans_run else None
        best = best_short(stages, max_tokens)
        finals.append(stages[-1]["accuracy"])
        answers.append(ans["accuracy"] if ans else float("nan"))
        lines.append(f"| {seed} | {s1['accuracy']:.1f} | {_cell(s2)} | "
                     f"{_cell(ans) if ans else '-'} | {_cell(stages[0])} | {_cell(stages[-1])} | "
                     + (f"{_cell(best)} ({best['stage']})" if best else "-") + " |")
        points = {"System 1": (s1["tokens_per_answer"], s1["accuracy"]),
                  "System 2": (s2["tokens_per_answer"], s2["accuracy"])}
        if ans:
            points["answer-only"] = (ans["tokens_per_answer"], ans["accuracy"])
        curves[f"seed {seed}"] = {"stages": stages, "points": points}
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")
    lines.append(f"\nmean over {len(finals)} seeds: stepwise last stage {mean(finals):.1f}%, "
                 f"answer-only {mean(answers):.1f}%")
    return "\n".join(lines), curves


def multiply_table(results: list[dict], paper: bool = False) -> tuple[str, dict]:
    """One row per `s2jax toy multiply` run: its budget, stage 0, the final (no trace) row, the
    best stage at <= 2k + 4 tokens, wall and CPU seconds (and the paper's figure for its k)."""
    lines = ["| k | arm | params | steps (rows x tokens) | stage 0 (tokens) | final, no trace "
             "(tokens) | best <= 2k+4 tokens | wall s | CPU s |"
             + (" paper (stepwise, GPT-2 small) |" if paper else ""),
             "|---|---|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if paper else "")]
    curves = {}
    for r in results:
        k, stages, final = r["config"]["k"], r["curriculum"], r["final"]
        best = best_short(stages, 2 * k + 4) if stages else final
        lines.append(
            f"| {k} | {r['arm']} | {r['params']:,} | {r['steps']} ({r['config']['batch_size']} x "
            f"{r['config']['seq_len']}) | {_cell(stages[0]) if stages else '-'} | {_cell(final)} "
            f"| {_cell(best) if best else '-'} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} |"
            + (f" {PAPER.get(k, '-')} |" if paper else ""))
        curves[f"{k}x{k} {r['arm']}"] = {
            "stages": stages, "points": {"final": (final["tokens_per_answer"],
                                                   final["accuracy"])}}
    return "\n".join(lines), curves


def write_stepwise_report(text: str, curves: dict, out: str | Path, title: str) -> None:
    """OUT/table.md (the table) and OUT/curve.png (the curves)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "table.md") as f:
        f.write(text + "\n")
    curve(curves, out / "curve.png", title)
