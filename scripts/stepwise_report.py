"""Tables and accuracy-tokens curves of stepwise-internalization runs, beside their baselines.

    # toy world: `s2jax demo --tokens-per-stage ...` outputs against answer-only demo outputs
    python scripts/stepwise_report.py toy --task last_letter --stepwise S0 S1 S2 \\
        --answer A0 A1 A2 --out report/last_letter
    # multiplication: `s2jax toy multiply` results, both arms (--paper: Deng et al.'s figures)
    python scripts/stepwise_report.py multiply RUN_A/results.json RUN_B/results.json \\
        --out report/mult [--paper]

Writes OUT/table.md and OUT/curve.png and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# Deng, Choi & Shieber 2024: GPT-2 small, stepwise internalization, no trace tokens at test time
# (their repository's README), and the abstract's "standard training cannot solve beyond 4-by-4".
PAPER = {4: 100.0, 5: 100.0, 7: 95.0, 9: 99.0, 11: 74.0}


def _load(path: Path) -> dict:
    path = path / "results.json" if path.is_dir() else path
    return json.loads(path.read_text())


def _best_short(stages: list[dict], max_tokens: float) -> dict | None:
    """The most accurate stage at <= max_tokens generated tokens per answer."""
    short = [s for s in stages if s["tokens_per_answer"] <= max_tokens]
    return max(short, key=lambda s: s["accuracy"]) if short else None


def toy(args) -> tuple[str, dict]:
    lines = [f"| seed | System 1 | System 2 (tokens) | answer-only distilled (tokens) | stepwise "
             f"stage 0: full trace (tokens) | stepwise, last stage (tokens) | best stepwise "
             f"<= {args.max_tokens:g} tokens (stage) |", "|---|---:|---:|---:|---:|---:|---:|"]
    curves, finals, answers = {}, [], []
    for stepwise, answer in zip(args.stepwise, args.answer or [None] * len(args.stepwise),
                                strict=True):
        run = _load(Path(stepwise))
        row = run["tasks"][args.task]
        seed = run["config"]["seed"]
        stages = row["curriculum"]
        s1, s2 = row["system1"], row["system2"]
        ans = _load(Path(answer))["tasks"][args.task]["distilled"] if answer else None
        best = _best_short(stages, args.max_tokens)
        finals.append(stages[-1]["accuracy"])
        answers.append(ans["accuracy"] if ans else float("nan"))
        cell = lambda s: f"{s['accuracy']:.1f} ({s['tokens_per_answer']:.1f})"
        lines.append(f"| {seed} | {s1['accuracy']:.1f} | {cell(s2)} | "
                     f"{cell(ans) if ans else '-'} | {cell(stages[0])} | {cell(stages[-1])} | "
                     + (f"{cell(best)} ({best['stage']})" if best else "-") + " |")
        points = {"System 1": (s1["tokens_per_answer"], s1["accuracy"]),
                  "System 2": (s2["tokens_per_answer"], s2["accuracy"])}
        if ans:
            points["answer-only"] = (ans["tokens_per_answer"], ans["accuracy"])
        curves[f"seed {seed}"] = {"stages": stages, "points": points}
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")
    lines.append(f"\nmean over {len(finals)} seeds: stepwise last stage {mean(finals):.1f}%, "
                 f"answer-only {mean(answers):.1f}%")
    return "\n".join(lines), curves


def multiply(args) -> tuple[str, dict]:
    lines = ["| k | arm | params | steps (rows x tokens) | stage 0 (tokens) | final, no trace "
             "(tokens) | best <= 2k+4 tokens | wall s | CPU s |"
             + (" paper (stepwise, GPT-2 small) |" if args.paper else ""),
             "|---|---|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if args.paper else "")]
    curves = {}
    for path in args.results:
        r = _load(Path(path))
        k, stages, final = r["config"]["k"], r["curriculum"], r["final"]
        cell = lambda s: f"{s['accuracy']:.1f} ({s['tokens_per_answer']:.1f})"
        best = _best_short(stages, 2 * k + 4) if stages else final
        paper = f" {PAPER.get(k, '-')} |" if args.paper else ""
        lines.append(
            f"| {k} | {r['arm']} | {r['params']:,} | {r['steps']} ({r['config']['batch_size']} x "
            f"{r['config']['seq_len']}) | {cell(stages[0]) if stages else '-'} | {cell(final)} | "
            f"{cell(best) if best else '-'} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} |"
            + paper)
        curves[f"{k}x{k} {r['arm']}"] = {
            "stages": stages, "points": {"final": (final["tokens_per_answer"],
                                                   final["accuracy"])}}
    return "\n".join(lines), curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    t = sub.add_parser("toy")
    t.add_argument("--task", required=True)
    t.add_argument("--stepwise", nargs="+", required=True, help="stepwise demo output dirs")
    t.add_argument("--answer", nargs="*", help="answer-only demo output dirs, same seeds, order")
    t.add_argument("--max-tokens", type=float, default=10.0)
    m = sub.add_parser("multiply")
    m.add_argument("results", nargs="+", help="results.json of s2jax toy multiply runs")
    m.add_argument("--paper", action="store_true", help="a column with Deng et al.'s figures")
    for q in (t, m):
        q.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    from s2jax.toy.report import curve

    text, curves = toy(args) if args.kind == "toy" else multiply(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    title = (f"toy {args.task}: stepwise internalization per stage" if args.kind == "toy"
             else "multiplication from scratch: stepwise vs answer-only")
    curve(curves, args.out / "curve.png", title)
    print(text)


if __name__ == "__main__":
    main()
