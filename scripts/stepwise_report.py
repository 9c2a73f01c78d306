"""Tables and accuracy-tokens curves of stepwise-internalization runs, beside their baselines.

    # toy world: `s2jax demo --tokens-per-stage ...` outputs against answer-only demo outputs
    python scripts/stepwise_report.py toy --task last_letter --stepwise S0 S1 S2 \\
        --answer A0 A1 A2 --out report/last_letter
    # multiplication: `s2jax toy multiply` results, both arms (--paper: Deng et al.'s figures)
    python scripts/stepwise_report.py multiply RUN_A/results.json RUN_B/results.json \\
        --out report/mult [--paper]

Writes OUT/table.md and OUT/curve.png and prints the table (`s2jax.toy.stepwise_report`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


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

    # imported after parsing: --help stays free of matplotlib
    from s2jax.toy.stepwise_report import (
        load_results,
        multiply_table,
        toy_table,
        write_stepwise_report,
    )

    if args.kind == "toy":
        text, curves = toy_table(args.task, [load_results(d) for d in args.stepwise],
                                 [load_results(d) for d in args.answer] if args.answer else None,
                                 args.max_tokens)
        title = f"toy {args.task}: stepwise internalization per stage"
    else:
        text, curves = multiply_table([load_results(r) for r in args.results], args.paper)
        title = "multiplication from scratch: stepwise vs answer-only"
    write_stepwise_report(text, curves, args.out, title)
    print(text)


if __name__ == "__main__":
    main()
