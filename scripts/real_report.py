"""Tables and the PNG of docs/real_results.md from finished real runs.

  PYTHONPATH=$PWD python3 scripts/real_report.py RUN_DIR... [--png docs/real_results.png]

Each RUN_DIR is an `s2jax run` directory (results.json; matrix.json when
scripts/real_matrix.py ran on it). Prints markdown tables; draws System 1 / System 2 /
distilled accuracy and tokens per answer per run, and the retention matrix where there is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABELS = {"system1": "System 1", "system2": "System 2", "distilled": "Distilled System 1"}


def _load(run_dir: Path) -> tuple[dict, dict | None]:
    results = json.loads((run_dir / "results.json").read_text())
    matrix = run_dir / "matrix.json"
    return results, json.loads(matrix.read_text()) if matrix.is_file() else None


def main_table(runs: list[tuple[dict, dict | None]]) -> str:
    lines = ["| run | system | accuracy % | tokens / answer | seconds | inputs | abstained |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for results, _ in runs:
        for r in results["rows"]:
            lines.append(f"| {results['name']} | {LABELS[r['system']]} ({r['method']}) | "
                         f"{r['accuracy']:.1f} | {r['tokens_per_answer']:.1f} | "
                         f"{r['seconds']:.0f} | {r['examples']} | {r['abstentions']} |")
        d = results["distill"]
        lines.append(f"| {results['name']} | *distillation set: kept {d['kept']} of "
                     f"{d['inputs']} inputs, {d['abstentions']} of {d['samples']} samples "
                     f"unreadable* | | | | | |")
    return "\n".join(lines)


def matrix_table(results: dict, matrix: dict) -> str:
    cols = matrix["columns"]
    lines = ["| " + results["name"] + " | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for row, cells in matrix["rows"].items():
        lines.append(f"| {row} | " + " | ".join(
            f"{cells[c]['accuracy']:.1f} ({cells[c]['tokens_per_answer']:.0f} tok)"
            for c in cols) + " |")
    return "\n".join(lines)


def plot(runs: list[tuple[dict, dict | None]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_matrix = [(r, m) for r, m in runs if m is not None]
    panels = 1 + len(with_matrix)
    ncols = min(panels, 3)
    nrows = -(-panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.6 * nrows), squeeze=False)
    axes = list(axes.flat)
    for extra in axes[panels:]:
        extra.set_visible(False)
    ax = axes[0]
    width = 0.27
    for k, system in enumerate(LABELS):
        xs, ys, toks = [], [], []
        for i, (results, _) in enumerate(runs):
            row = next(r for r in results["rows"] if r["system"] == system)
            xs.append(i + (k - 1) * width)
            ys.append(row["accuracy"])
            toks.append(row["tokens_per_answer"])
        bars = ax.bar(xs, ys, width, label=LABELS[system])
        for b, t in zip(bars, toks, strict=True):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, f"{t:.0f}t",
                    ha="center", fontsize=7)
    ax.set_xticks(range(len(runs)), [r["name"] for r, _ in runs], rotation=12, fontsize=7)
    ax.set_ylabel("accuracy % on held-out countries (t: tokens/answer)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    for ax, (results, matrix) in zip(axes[1:panels], with_matrix, strict=True):
        cols = matrix["columns"]
        for k, row in enumerate(matrix["rows"]):
            ax.bar([i + (k - 0.5) * 0.4 for i in range(len(cols))],
                   [matrix["rows"][row][c]["accuracy"] for c in cols], 0.4, label=row)
        ax.set_xticks(range(len(cols)), cols, rotation=25, fontsize=7, ha="right")
        ax.set_ylim(0, 105)
        ax.set_title(f"retention: {results['name']}", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_greedy(path: Path) -> None:
    """The greedy check of the captured real outputs: System 1 vs System 2 per model, task and
    template (scripts/extraction_report.py --accuracy), as bars with tokens per answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from extraction_report import greedy_accuracy, rows

    acc = greedy_accuracy(rows())
    groups = sorted({(a["model"].split("-instruct")[0], a["task"], a["template"]) for a in acc})
    fig, ax = plt.subplots(figsize=(12, 4.2))
    for k, system in enumerate(("system1", "system2")):
        xs, ys, toks = [], [], []
        for i, (model, task, template) in enumerate(groups):
            cands = [a for a in acc if (a["model"].split("-instruct")[0], a["task"],
                                        a["template"]) == (model, task, template)
                     and (a["method"] == "system1") == (system == "system1")]
            best = max(cands, key=lambda a: a["accuracy"]) if cands else None
            if best:
                xs.append(i + (k - 0.5) * 0.4)
                ys.append(best["accuracy"])
                toks.append(f"{best['tokens']:.0f}t" + ("" if system == "system1"
                                                         else f"\n{best['method']}"))
        bars = ax.bar(xs, ys, 0.4, label={"system1": "System 1",
                                         "system2": "System 2 (best method)"}[system])
        for b, t in zip(bars, toks, strict=True):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, t, ha="center",
                    fontsize=6)
    ax.set_xticks(range(len(groups)), [f"{m}\n{t} {tp}" for m, t, tp in groups], fontsize=6,
                  rotation=30, ha="right")
    ax.set_ylabel("accuracy % (validation split, greedy)")
    ax.set_ylim(0, 115)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="*")
    ap.add_argument("--png", default=None)
    ap.add_argument("--greedy-png", default=None, help="plot the captured outputs' greedy check")
    args = ap.parse_args()
    if args.greedy_png:
        plot_greedy(Path(args.greedy_png))
    runs = [_load(Path(d)) for d in args.run_dirs]
    if not runs:
        return
    print(main_table(runs))
    for results, matrix in runs:
        if matrix is not None:
            print()
            print(matrix_table(results, matrix))
    if args.png:
        plot(runs, Path(args.png))


if __name__ == "__main__":
    main()
