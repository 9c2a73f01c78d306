"""report.md and report.png of a built report (`s2jax.report.build`); figures are not recomputed
here, only formatted."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from s2jax.report.build import BASE, STUDENT, TEACHER, WRITTEN_BY

MD_MARK = f"<!-- {WRITTEN_BY}: written by s2jax; `s2jax report` replaces this file -->"
LABELS = {BASE: "System 1", TEACHER: "System 2", STUDENT: "Distilled System 1"}
NOT_EVALUATED = "—"  # a system evaluated on some templates only (cross_fit.system2_on)
LONG_TEMPLATE = 24  # longer template names are printed as T1, T2, ... with a legend


def _label(system: str, method: str = "") -> str:
    if system == TEACHER and method:
        return f"System 2 ({method})"
    return LABELS.get(system, system)


def _arm_label(entry: Mapping) -> str:
    return f"{entry['arm']} *(exploratory)*" if entry["exploratory"] else entry["arm"]


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _diff(d: Mapping) -> str:
    return f"{d['difference']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def accuracy_table(split: Mapping, methods: Mapping[str, str]) -> list[str]:
    lines = ["| arm | system | items | accuracy % [95% CI] | tokens / answer | abstained |",
             "|---|---|---:|---:|---:|---:|"]
    for e in split["arms"]:
        for s, v in e["systems"].items():
            lines.append(f"| {_arm_label(e)} | {_label(s, methods.get(e['arm'], ''))} | "
                         f"{v['n']} | {v['accuracy']:.1f} [{v['low']:.1f}, {v['high']:.1f}] | "
                         f"{v['tokens_per_answer']:.1f} | {v['abstentions']} |")
    return lines


def paired_table(split: Mapping, margin: float) -> list[str]:
    rows = [(e, other, p) for e in split["arms"] for other, p in e["paired"].items()]
    if not rows:
        return []
    lines = ["| arm | distilled against | difference, points [95% CI] | only distilled right / "
             f"only other right | McNemar p | Holm p | non-inferior (margin {margin:g}) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for e, other, p in rows:
        dagger = " †" if p["clustered"] and p["mcnemar_p"] is not None else ""
        counts = ("n/a" if p["only_distilled"] is None
                  else f"{p['only_distilled']} / {p['only_other']}")
        ni = p.get("noninferior")
        verdict = "" if ni is None else (
            f"{'yes' if ni['passed'] else 'no'} (lower end {p['low']:+.1f} vs "
            f"{-ni['margin']:g})")
        lines.append(f"| {_arm_label(e)} | {LABELS[other]} | {_diff(p)} | {counts} | "
                     f"{_p(p['mcnemar_p'])}{dagger} | {_p(p['holm_p'])} | {verdict} |")
    if any(p["clustered"] for _, _, p in rows):
        lines.append("\n† McNemar treats rows as independent; an item's templates are not, so "
                     "read the item-clustered interval.")
    return lines


def seed_table(split: Mapping) -> list[str]:
    if not split["seed_groups"]:
        return []
    lines = ["| arms (one recipe) | figure | mean ± sd | per seed |", "|---|---|---:|---|"]
    for g in split["seed_groups"]:
        arms = ", ".join(g["arms"]) + (" *(exploratory)*" if g["exploratory"] else "")
        for key, f in g["figures"].items():
            sd = "n/a" if f["sd"] is None else f"{f['sd']:.1f}"
            per = "; ".join(f"{k}: {v:.1f}" for k, v in f["values"].items())
            lines.append(f"| {arms} | {_figure(key)} | {f['mean']:.1f} ± {sd} | {per} |")
    return lines


def _figure(key: str) -> str:
    """The printed name of a seed group's figure key ("accuracy:system1", ...)."""
    kind, _, system = key.partition(":")
    if kind == "difference":
        return f"{LABELS[STUDENT]} − {_label(system)}, points"
    return f"{_label(system)} {'accuracy %' if kind == 'accuracy' else 'tokens / answer'}"


def _template_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(column labels, legend lines): long template texts become T1, T2, ..."""
    if all(len(n) <= LONG_TEMPLATE and "|" not in n for n in names):
        return list(names), []
    short = [f"T{i + 1}" for i in range(len(names))]
    legend = [f"- {s}: `{n}`" for s, n in zip(short, names, strict=True)]
    return short, legend


def template_tables(split: Mapping, methods: Mapping[str, str]) -> list[str]:
    lines = []
    for e in split["arms"]:
        t = e["templates"]
        if t is None:
            continue
        cols, legend = _template_names(t["names"])
        lines += ["" if lines else None, f"**{_arm_label(e)}**: accuracy % by template; rows "
                  "below: paired difference from System 1 (points, 95% CI)", "",
                  "| system | " + " | ".join(cols) + " | template mean |",
                  "|---|" + "---:|" * (len(cols) + 1)]
        for s, v in t["systems"].items():
            cells = [f"{v['per_template'][n]['accuracy']:.1f}" if n in v["per_template"]
                     else NOT_EVALUATED for n in t["names"]]
            mean = NOT_EVALUATED if v["mean"] is None else f"{v['mean']:.1f}"
            lines.append(f"| {_label(s, methods.get(e['arm'], ''))} | " + " | ".join(cells)
                         + f" | {mean} |")
        for s, v in t["vs_base"].items():
            cells = [_diff(v["per_template"][n]) if n in v["per_template"] else NOT_EVALUATED
                     for n in t["names"]]
            mean = NOT_EVALUATED if v["mean"] is None else _diff(v["mean"])
            lines.append(f"| {_label(s, methods.get(e['arm'], ''))} − System 1 | "
                         + " | ".join(cells) + f" | {mean} |")
        lines += [""] + legend if legend else []
    return [x for x in lines if x is not None]


def markdown(report: Mapping, title: str) -> str:
    """report.md: the settings, then per split the accuracy, paired, seed and template tables."""
    s = report["settings"]
    level = f"{100 * s['level']:g}%"
    methods = {a["name"]: a["method"] for a in report["arms"]}
    out = [MD_MARK, f"# Report: {title}", "",
           f"{len(report['arms'])} arm(s). Accuracy with Wilson {level} intervals. The "
           "distilled System 1 against System 1 and System 2 on the same items: the paired "
           f"difference with a bootstrap {level} percentile interval ({s['resamples']} "
           f"resamples, seed {s['seed']}; items resampled with their templates together), the "
           "exact two-sided McNemar p over rows, Holm-adjusted across the arms of a split; "
           "non-inferior to System 2 when the interval's lower end is above "
           f"-{s['margin']:g} points. Every figure is computed from the per-item rows "
           "(eval/*.jsonl). Figures of *exploratory* arms are not pre-registered results."]
    for split in report["splits"]:
        out += ["", f"## Split: {split['split']}", "", "### Accuracy", ""]
        out += accuracy_table(split, methods)
        for heading, lines in (("Distilled System 1, paired", paired_table(split, s["margin"])),
                               ("Seeds", seed_table(split)),
                               ("By template", template_tables(split, methods))):
            if lines:
                out += ["", f"### {heading}", ""] + lines
    notes = [(a, n) for a in report["arms"] for n in a["notes"]]
    marks = [a for a in report["arms"] if a["exploratory"]]
    if notes or marks:
        out += ["", "## Notes", ""]
        out += [f"- **{a['name']}**: exploratory" for a in marks]
        out += [f"- **{a['name']}**: {n}" for a, n in notes]
    return "\n".join(out) + "\n"


def _accuracy_panel(ax, split: Mapping) -> None:
    entries = split["arms"]
    systems = [s for s in (BASE, TEACHER, STUDENT)
               if any(s in e["systems"] for e in entries)]
    width = 0.8 / max(len(systems), 1)
    for k, s in enumerate(systems):
        for i, e in enumerate(entries):
            v = e["systems"].get(s)
            if v is None:
                continue
            x = i + (k - (len(systems) - 1) / 2) * width
            ax.bar(x, v["accuracy"], width, color=f"C{k}", hatch="//" if e["exploratory"]
                         else None, label=LABELS[s] if i == 0 else None)
            ax.errorbar(x, v["accuracy"], yerr=[[v["accuracy"] - v["low"]],
                                                [v["high"] - v["accuracy"]]],
                        color="black", capsize=2, linewidth=0.8)
            ax.annotate(f"{v['tokens_per_answer']:.0f}t", (x, 0), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=6)
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels([e["arm"] + ("*" if e["exploratory"] else "") for e in entries],
                       rotation=30 if len(entries) > 3 else 0, ha="right" if len(entries) > 3
                       else "center", fontsize=7)
    ax.set_ylim(0, 112)
    ax.set_ylabel("accuracy % (95% CI); at the base: tokens / answer")
    ax.legend(fontsize=7, ncols=3, loc="upper left")


def _paired_panel(ax, split: Mapping, margin: float) -> None:
    rows = [(e, o, p) for e in split["arms"] for o, p in e["paired"].items()]
    for y, (_, other, p) in enumerate(rows):
        color = "C0" if other == BASE else "C1"
        ax.errorbar(p["difference"], y, xerr=[[p["difference"] - p["low"]],
                                              [p["high"] - p["difference"]]],
                    fmt="o", color=color, capsize=3, markersize=4)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.axvline(-margin, color="C1", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{e['arm']}{'*' if e['exploratory'] else ''} vs "
                        f"{LABELS[o]}" for e, o, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"distilled − other, points (95% CI); dashed: −{margin:g} margin vs System 2")


def chart(report: Mapping, title: str) -> bytes:
    """report.png of the first split (test): accuracy per arm and system, and the paired
    differences of the distilled system; exploratory arms hatched and starred."""
    import matplotlib  # matplotlib: only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = report["splits"][0]
    pairs = sum(len(e["paired"]) for e in split["arms"])
    fig, axes = plt.subplots(1, 2 if pairs else 1, squeeze=False,
                             figsize=(max(6.0, 1.6 * len(split["arms"]) + 3) + (5 if pairs else 0),
                                      max(3.5, 0.3 * pairs + 1.5)))
    _accuracy_panel(axes[0][0], split)
    if pairs:
        _paired_panel(axes[0][1], split, report["settings"]["margin"])
    fig.suptitle(f"{title}: split {split['split']}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": WRITTEN_BY})
    plt.close(fig)
    return buf.getvalue()
