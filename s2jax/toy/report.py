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
        for st in row.get("curriculum", []):
            lines.append(f"| {name} ({row['method']}) | stage {st['stage']} ({st['removed']} "
                         f"trace tokens removed) | {st['accuracy']:.1f} | "
                         f"{st['tokens_per_answer']:.1f} | {st['seconds']:.1f} |")
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


def curve(curves: dict[str, dict], path: Path, title: str) -> None:
    """Accuracy against generated tokens per answer, one line per run through its stages.

    Args:
      curves: label -> {"stages": [curriculum rows], "points": {label: (tokens, accuracy)}}
        (the points: reference systems, e.g. System 1, System 2, answer-only distillation).
      path: the PNG to write.
      title: the chart's title.
    """
    # matplotlib only for the chart; the Agg backend before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers: dict[str, str] = {}  # one marker per reference system, in every colour
    for label, c in curves.items():
        xs = [st["tokens_per_answer"] for st in c["stages"]]
        line, = ax.plot(xs, [st["accuracy"] for st in c["stages"]], "-o", ms=3, label=label)
        for st in c["stages"][:: max(1, len(c["stages"]) // 6)]:
            ax.annotate(str(st["removed"]), (st["tokens_per_answer"], st["accuracy"]),
                        fontsize=6, color=line.get_color(), xytext=(2, 2),
                        textcoords="offset points")
        for name, (tokens, accuracy) in c.get("points", {}).items():
            first = name not in markers
            marker = markers.setdefault(name, "sD^vP*X"[len(markers) % 7])
            ax.plot([tokens], [accuracy], marker, color=line.get_color(), ms=7, mfc="none",
                    label=name if first else None)
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per answer (numbers: trace tokens removed)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def demo_curves(results: dict) -> dict[str, dict]:
    """The demo's tasks that ran a curriculum, as `curve`'s input."""
    out = {}
    for name, row in results["tasks"].items():
        if row.get("curriculum"):
            points = {label: (row[key]["tokens_per_answer"], row[key]["accuracy"])
                      for key, label in SYSTEMS[:2]}
            out[name] = {"stages": row["curriculum"], "points": points}
    return out


def write_report(out: Path, results: dict) -> str:
    """Writes table.md and results.png (and curve.png after a curriculum) under `out`;
    returns the table."""
    text = table(results)
    with atomic_open(out / "table.md") as f:
        f.write(text + "\n")
    chart(results, out / "results.png")
    if curves := demo_curves(results):
        curve(curves, out / "curve.png", "stepwise internalization on the toy world")
    return text
