"""The report's figures, computed from the arms' per-item rows (nothing read from summaries).

`build_report(arms, settings)` returns a JSON-ready dict (report.json) that the markdown and the
chart are rendered from. Per split (test first), per arm and system: accuracy with a Wilson
interval, tokens per answer, abstentions; the distilled System 1 against System 1 and against
System 2 on the same items: the paired difference with a bootstrap interval (clustered by item
when an item has several templates), the exact McNemar p over rows, Holm-adjusted across the
arms of the split, and non-inferiority to System 2 at a stated margin; per template (when rows
carry templates), each system's accuracy, the template mean, and its paired difference from
System 1 (the base model answering directly); arms that differ only by seed, as mean +- sd
with every seed listed. Figures are in percent and percentage points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from s2jax.core.errors import S2JaxError
from s2jax.report import stats
from s2jax.report.arms import SYSTEMS, Arm
from s2jax.report.rows import DEFAULT_SPLIT, ItemRow, by_split

FORMAT = 1  # report.json's format version
WRITTEN_BY = "s2jax report"  # marks the report files s2jax wrote (and may replace)
BASE, TEACHER, STUDENT = SYSTEMS  # system1 (the base model answering directly), system2, distilled


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """How the report tests.

    Attributes:
      margin: non-inferiority margin against System 2, in percentage points.
      level: two-sided coverage of every interval.
      resamples: bootstrap replicates per interval.
      seed: the bootstrap's seed (the report is deterministic for fixed rows and settings).
    """

    margin: float = 10.0
    level: float = stats.LEVEL
    resamples: int = stats.RESAMPLES
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.margin <= 100:
            raise S2JaxError(f"margin={self.margin}: expected percentage points in [0, 100]")
        if not 0.5 <= self.level < 1:
            raise S2JaxError(f"level={self.level}: expected a coverage in [0.5, 1)")
        if self.resamples < 100:
            raise S2JaxError(f"resamples={self.resamples}: expected >= 100")


def _pct(x: float) -> float:
    return round(100 * x, 6)  # 1e-6 points: well below any printed digit, stable JSON bytes


def system_summary(rows: Sequence[ItemRow], level: float) -> dict:
    """Accuracy (Wilson interval), tokens per answer and abstentions of one system's rows."""
    n = len(rows)
    ci = stats.wilson(sum(r.score for r in rows), n, level)
    return {"n": n, "accuracy": _pct(ci.estimate), "low": _pct(ci.low), "high": _pct(ci.high),
            "tokens_per_answer": round(sum(r.tokens for r in rows) / n, 6),
            "abstentions": sum(r.answer is None for r in rows),
            "binary": all(r.binary for r in rows)}


def _aligned(a: Sequence[ItemRow], b: Sequence[ItemRow]) -> tuple[list, list, list]:
    """(a's scores, b's scores, item labels) in id order, on the ids both hold (the same ids,
    or one system evaluated on a subset: checked when the arm was read)."""
    bs = {r.id: r for r in b}
    a = [r for r in a if r.id in bs]
    return ([r.score for r in a], [bs[r.id].score for r in a], [r.item for r in a])


def _interval(ci: stats.Interval) -> dict:
    return {"difference": _pct(ci.estimate), "low": _pct(ci.low), "high": _pct(ci.high)}


def paired(student: Sequence[ItemRow], other: Sequence[ItemRow], settings: ReportSettings, *,
           margin: float | None = None) -> dict:
    """The distilled system against `other` on the same items (see the module docstring)."""
    a, b, items = _aligned(student, other)
    clustered = len(set(items)) < len(items)
    kw = {"resamples": settings.resamples, "seed": settings.seed, "level": settings.level}
    out: dict = {"items": len(set(items)), "rows": len(items), "clustered": clustered}
    if margin is None:
        out.update(_interval(stats.paired_bootstrap(a, b, items, **kw)))
    else:
        ni = stats.noninferiority(a, b, margin / 100, items, **kw)
        out.update(_interval(ni.difference))
        out["noninferior"] = {"margin": margin, "passed": ni.passed,
                              "share_below": round(ni.share_below, 6)}
    binary = all(x in (0.0, 1.0) for x in a + b)
    only_a = sum(x > y for x, y in zip(a, b, strict=True)) if binary else None
    only_b = sum(x < y for x, y in zip(a, b, strict=True)) if binary else None
    out.update({"only_distilled": only_a, "only_other": only_b,
                "mcnemar_p": stats.mcnemar_exact(only_a, only_b) if binary else None,
                "holm_p": None, "holm_family": None})
    return out


def templates(systems: Mapping[str, Sequence[ItemRow]], settings: ReportSettings) -> dict | None:
    """Per-template accuracy, template means, and differences from System 1; None without
    two or more templates."""
    names = sorted({r.template for rs in systems.values() for r in rs if r.template is not None})
    if len(names) < 2 or any(r.template is None for rs in systems.values() for r in rs):
        return None
    out: dict = {"names": names, "systems": {}, "vs_base": {}}
    for system, rows in systems.items():
        per = {t: system_summary([r for r in rows if r.template == t], settings.level)
               for t in names if any(r.template == t for r in rows)}
        # a system evaluated on some templates only has no template mean
        mean = (round(sum(p["accuracy"] for p in per.values()) / len(names), 6)
                if len(per) == len(names) else None)
        out["systems"][system] = {"per_template": per, "mean": mean}
    if BASE not in systems:
        return out
    kw = {"resamples": settings.resamples, "seed": settings.seed, "level": settings.level}
    for system, rows in systems.items():
        if system == BASE:
            continue
        a, b, items = _aligned(rows, systems[BASE])
        tmpl = [r.template for r in rows]  # base (System 1) holds every id: a, b keep order
        count = {t: tmpl.count(t) for t in names if t in tmpl}
        per = {}
        for t in count:
            keep = [i for i, x in enumerate(tmpl) if x == t]
            per[t] = _interval(stats.paired_bootstrap(
                [a[i] for i in keep], [b[i] for i in keep], [items[i] for i in keep], **kw))
        # weights 1 / rows of the template: the weighted mean is the mean of template means
        mean = (_interval(stats.paired_bootstrap(
            a, b, items, weights=[1 / count[t] for t in tmpl], **kw))
            if len(count) == len(names) else None)
        out["vs_base"][system] = {"per_template": per, "mean": mean}
    return out


def arm_split(arm: Arm, split: str, settings: ReportSettings) -> dict | None:
    """One arm's figures on one split; None when the arm has no rows there."""
    systems = {s: by_split(rows).get(split, []) for s, rows in _ordered(arm.rows).items()}
    systems = {s: rows for s, rows in systems.items() if rows}
    if not systems:
        return None
    out = {"arm": arm.name, "exploratory": arm.exploratory,
           "systems": {s: system_summary(rows, settings.level) for s, rows in systems.items()},
           "paired": {}, "templates": templates(systems, settings)}
    if STUDENT in systems:
        for other, margin in ((BASE, None), (TEACHER, settings.margin)):
            if other in systems:
                out["paired"][other] = paired(systems[STUDENT], systems[other], settings,
                                              margin=margin)
    return out


def _ordered(rows: Mapping[str, Sequence[ItemRow]]) -> dict[str, Sequence[ItemRow]]:
    """The pipeline's systems first, in table order, then any others by name."""
    known = [s for s in SYSTEMS if s in rows]
    return {s: rows[s] for s in known + sorted(set(rows) - set(known))}


def adjust_holm(entries: list[dict]) -> None:
    """Holm-adjusts each comparison's McNemar p across the arms of one split, in place."""
    for other in (BASE, TEACHER):
        tests = [e["paired"][other] for e in entries
                 if other in e["paired"] and e["paired"][other]["mcnemar_p"] is not None]
        for t, p in zip(tests, stats.holm([t["mcnemar_p"] for t in tests]), strict=True):
            t["holm_p"] = p
            t["holm_family"] = len(tests)


def seed_groups(arms: Sequence[Arm], entries: Sequence[dict]) -> list[dict]:
    """Arms of one recipe that differ only by seed: mean +- sd of each figure, seeds listed.

    Figures are keyed "accuracy:SYSTEM", "tokens_per_answer:SYSTEM" and "difference:OTHER"
    (distilled - OTHER, points).
    """
    by_name = {e["arm"]: e for e in entries}
    groups: dict[str, list[Arm]] = {}
    for arm in arms:
        if arm.group is not None and arm.name in by_name:
            groups.setdefault(arm.group, []).append(arm)
    out = []
    for group, members in groups.items():
        seeds = [a.seed or a.name for a in members]
        if len(members) < 2 or len(set(seeds)) < len(seeds):
            continue
        figures: dict = {}
        for a, seed in zip(members, seeds, strict=True):
            e = by_name[a.name]
            for s, v in e["systems"].items():
                figures.setdefault(f"accuracy:{s}", {})[seed] = v["accuracy"]
                figures.setdefault(f"tokens_per_answer:{s}", {})[seed] = v["tokens_per_answer"]
            for other, p in e["paired"].items():  # distilled - other
                figures.setdefault(f"difference:{other}", {})[seed] = p["difference"]
        out.append({"group": group, "arms": [a.name for a in members], "seeds": seeds,
                    "exploratory": any(a.exploratory for a in members),
                    "figures": {k: _rounded(stats.seed_summary(v)) for k, v in figures.items()
                                if len(v) == len(members)}})
    return out


def _rounded(summary: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in summary.items()}


def build_report(arms: Sequence[Arm], settings: ReportSettings | None = None) -> dict:
    """Every figure of the report, from the arms' rows.

    Args:
      arms: the runs, with unique names (`s2jax.report.arms.find_arms` reads a root's).
      settings: margin, level, resamples and seed (default: `ReportSettings()`).

    Returns:
      report.json's contents: {"format", "settings", "arms": [...], "splits": [{"split",
      "arms": [per-arm figures], "seed_groups": [...]}]}.
    """
    settings = settings or ReportSettings()
    if not arms:
        raise S2JaxError("no arms to report (expected at least one run)")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise S2JaxError(f"arm names repeat ({names}); expected one name per arm")
    splits = sorted({r.split for a in arms for rs in a.rows.values() for r in rs},
                    key=lambda s: (s != DEFAULT_SPLIT, s))
    out = {"written_by": WRITTEN_BY, "format": FORMAT, "settings": dataclasses.asdict(settings),
           "arms": [{"name": a.name, "path": a.path, "task": a.task, "method": a.method,
                     "seed": a.seed, "group": a.group, "exploratory": a.exploratory,
                     "notes": list(a.notes)} for a in arms],
           "splits": []}
    for split in splits:
        entries = [e for e in (arm_split(a, split, settings) for a in arms) if e is not None]
        adjust_holm(entries)
        out["splits"].append({"split": split, "arms": entries,
                              "seed_groups": seed_groups(arms, entries)})
    return out
