"""The demo's paper-style table (markdown) and chart (PNG), and each task's verdict."""

from __future__ import annotations

from pathlib import Path

from s2jax.core.atomic import atomic_open

SYSTEMS = (("system1", "System 1"), ("system2", "System 2"), ("distilled", "Distilled System 1"))


def verdict(row: dict) -> str:
    """"distils", "does not distil", "partly distils" or "System 2 no better", by the paper's
    yardsticks.

    Distils: distilled System 1 within 5 points of System 2 at <= 1/4 of its tokens per answer.
    Does not distil: distilled System 1 more than 15 points below System 2.
    System 2 no better: System 2 is less than 10 points above System 1 (nothing to distil).
    """
    d, s1, s2 = row.get("distilled"), row["system1"], row["system2"]
    if s2["accuracy"] < s1["accuracy"] + 10:
        return "System 2 no better"
    if d is None:
        return "nothing kept to distil"
    short = d["tokens_per_answer"] <= s2["tokens_per_answer"] / 4
    if d["accuracy"] >= s2["accuracy"] - 5 and short:
        return "distils"
    if d["accuracy"] < s2["accuracy"] - 15:
        return "does not distil"
    return "partly distils"


def table(results: dict) -> str:
    """The markdown table: accuracy, generated tokens per answer and seconds per system."""
    lines = ["| task (method) | system | accuracy % | tokens / answer | seconds |",
             "|---|---|---:|---:|---:|"]
    for name, row in results["tasks"].items():
        for key, label in SYSTEMS:
            s = row[key]
            if s is None:
                continue
            what = f"{label} ({row['method']})" if key == "system2" else label
            lines.append(f"| {name} ({row['method']}) | {what} | {s['accuracy']:.1f} | "
                         f"{s['tokens_per_answer']:.1f} | {s['seconds']:.1f} |")
        lines.append(f"| {name} ({row['method']}) | *{row['verdict']}*: kept "
                     f"{row['distill_set']['kept']}/{row['distill_set']['unlabeled']} inputs, "
                     f"fine-tune + eval {row['finetune_seconds']:.0f} s"
                     + "".join(f"; **warning**: {w}" for w in row.get("warnings", []))
                     + " | | | |")
    lines.append(f"\nTotal: {results['seconds']:.0f} s")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    """Grouped bars of accuracy per task, labelled with tokens per answer."""
    # matplotlib only for the chart; the Agg backend before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["tasks"])
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 2, 4))
    width = 0.27
    for k, (key, label) in enumerate(SYSTEMS):
        xs, ys, toks = [], [], []
        for i, name in enumerate(names):
            s = results["tasks"][name][key]
            if s is not None:
                xs.append(i + (k - 1) * width)
                ys.append(s["accuracy"])
                toks.append(s["tokens_per_answer"])
        bars = ax.bar(xs, ys, width, label=label)
        for bar, tok in zip(bars, toks, strict=True):
            ax.annotate(f"{tok:.0f}t", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n({results['tasks'][n]['method']})" for n in names])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title("System 2 distillation on the toy world (labels: generated tokens per answer)")
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_report(out: Path, results: dict) -> str:
    """Writes table.md and results.png under `out`; returns the table."""
    text = table(results)
    with atomic_open(out / "table.md") as f:
        f.write(text + "\n")
    chart(results, out / "results.png")
    return text
