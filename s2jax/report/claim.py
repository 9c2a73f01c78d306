"""The pre-registered claim "distillation carries S2A at System 1's cost", tested on per-item rows.

Three criteria (docs/real_preregistration.md, issue 25), all in percentage points:
  1 s2a        the paired 95% interval of (distilled - System 2) on the distilled-on template
               (the wrong suggestion) has its lower end above -10
  2 retention  the distilled model's mean over the four templates is at least the base
               System 1's mean - 2 (point estimates; the paired interval is reported beside)
  3 control    the paired 95% interval of (distilled - the own-bare-reply control's distilled
               model) on the distilled-on template has its lower end above 0
The claim passes only when all three pass; a criterion whose rows are missing is "not run" and
the claim is then not passed. Intervals are the report's paired bootstrap (10,000 resamples,
seed 0, clustered by item). Pure Python and numpy, like the rest of `s2jax.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.report import stats
from s2jax.report.rows import ItemRow, read_rows

TEMPLATE = "suggest_incorrect"  # the template distilled on
S2A_MARGIN = -10.0  # criterion 1: lower end of (distilled - S2A) above this
MEAN_MARGIN = -2.0  # criterion 2: distilled template mean >= base template mean + this
CONTROL_MARGIN = 0.0  # criterion 3: lower end of (distilled - control) above this


def _pct(x: float) -> float:
    return round(100 * x, 4)


def _by_id(rows: Sequence[ItemRow], template: str | None, where: str) -> dict[str, ItemRow]:
    out = {r.id: r for r in rows if template is None or r.template == template}
    if not out:
        raise S2JaxError(f"{where}: no rows with template {template!r} (expected the claim's "
                         "per-item rows)")
    return out


def paired_difference(a: Sequence[ItemRow], b: Sequence[ItemRow], where: str, *,
                      template: str | None = TEMPLATE, seed: int = 0) -> dict:
    """(a - b) in points on the items both hold under `template`, with its paired interval.

    Raises S2JaxError when the two sets of rows are not the same items.
    """
    ra, rb = _by_id(a, template, where), _by_id(b, template, where)
    if set(ra) != set(rb):
        missing = sorted(set(ra) ^ set(rb))[0]
        raise S2JaxError(f"{where}: the two systems were evaluated on different items (e.g. "
                         f"{missing!r}); expected the same items, paired")
    ids = sorted(ra)
    ci = stats.paired_bootstrap([ra[i].score for i in ids], [rb[i].score for i in ids],
                                [ra[i].item for i in ids], seed=seed)
    return {"n": len(ids), "a": _pct(sum(ra[i].score for i in ids) / len(ids)),
            "b": _pct(sum(rb[i].score for i in ids) / len(ids)),
            "difference": _pct(ci.estimate), "low": _pct(ci.low), "high": _pct(ci.high)}


def template_mean(rows: Sequence[ItemRow]) -> tuple[float, dict[str, float], int]:
    """(mean of the per-template accuracies in %, {template: accuracy %}, rows)."""
    per: dict[str, list[float]] = {}
    for r in rows:
        if r.template is None:
            raise S2JaxError(f"row {r.id!r}: no template (criterion 2 needs templated rows)")
        per.setdefault(r.template, []).append(r.score)
    acc = {t: 100 * sum(v) / len(v) for t, v in sorted(per.items())}
    return round(sum(acc.values()) / len(acc), 4), {t: round(a, 4) for t, a in acc.items()}, \
        len(rows)


def evaluate_claim(systems: Mapping[str, Sequence[ItemRow]],
                   control: Sequence[ItemRow] | None, *, seed: int = 0) -> dict:
    """The three criteria and the verdict.

    Args:
      systems: {"system1", "system2", "distilled": rows} of the arm under test (base System 1,
        base System 2 and the cross-fitted distilled model, on the same items).
      control: the own-bare-reply control arm's distilled rows (None: not run).
      seed: the bootstrap's seed.
    """
    for name in ("system1", "system2", "distilled"):
        if name not in systems:
            raise S2JaxError(f"claim: no {name} rows (expected base System 1, System 2 and the "
                             "distilled model)")
    d, s1 = systems["distilled"], systems["system1"]
    c1 = paired_difference(d, systems["system2"], "claim 1 (distilled vs S2A)", seed=seed)
    c1["passed"] = c1["low"] > S2A_MARGIN
    dm, dper, n_d = template_mean(d)
    bm, bper, n_b = template_mean(s1)
    if set(dper) != set(bper) or n_d != n_b:
        raise S2JaxError("claim 2: distilled and base System 1 rows differ in templates or "
                         f"items ({n_d} vs {n_b} rows)")
    weights = {t: 1 / sum(r.template == t for r in d) for t in dper}
    ci = stats.paired_bootstrap(*_aligned_scores(d, s1), [r.item for r in sorted(d, key=_id)],
                                weights=[weights[r.template] for r in sorted(d, key=_id)],
                                seed=seed)
    c2 = {"n": n_d, "templates": len(dper), "distilled": dm, "base": bm,
          "difference": round(dm - bm, 4), "low": _pct(ci.low), "high": _pct(ci.high),
          "per_template": {"distilled": dper, "base": bper}, "passed": dm >= bm + MEAN_MARGIN}
    if control is None:
        c3 = {"passed": None}
    else:
        c3 = paired_difference(d, control, "claim 3 (distilled vs own-bare-reply control)",
                               seed=seed)
        c3["passed"] = c3["low"] > CONTROL_MARGIN
    results = [c1["passed"], c2["passed"], c3["passed"]]
    verdict = "PASS" if all(r is True for r in results) else (
        "FAIL" if any(r is False for r in results) else "INCOMPLETE")
    return {"verdict": verdict, "template": TEMPLATE,
            "criteria": {"s2a": c1, "retention": c2, "control": c3},
            "margins": {"s2a": S2A_MARGIN, "retention": MEAN_MARGIN, "control": CONTROL_MARGIN}}


def _id(r: ItemRow) -> str:
    return r.id


def _aligned_scores(a: Sequence[ItemRow], b: Sequence[ItemRow]) -> tuple[list, list]:
    rb = {r.id: r.score for r in b}
    missing = next((r.id for r in a if r.id not in rb), None)
    if missing is not None:
        raise S2JaxError(f"claim 2: item {missing!r} has no base System 1 row")
    return [r.score for r in sorted(a, key=_id)], [rb[r.id] for r in sorted(a, key=_id)]


def claim_of_root(root: str | Path, arm: str, control_arm: str) -> dict:
    """The claim for `root/<arm>` against `root/<control_arm>` (not run when absent)."""
    root = Path(root)
    systems = {s: read_rows(root / arm / "eval" / f"{s}.jsonl")
               for s in ("system1", "system2", "distilled")
               if (root / arm / "eval" / f"{s}.jsonl").is_file()}
    if "distilled" not in systems:
        raise S2JaxError(f"{root / arm}: no eval/distilled.jsonl (expected a finished arm)")
    path = root / control_arm / "eval" / "distilled.jsonl"
    control = read_rows(path) if path.is_file() else None
    return {"arm": arm, "control_arm": control_arm, **evaluate_claim(systems, control)}


def render(claims: Sequence[Mapping]) -> str:
    """The verdict table (markdown) of one or more arms' claims."""
    lines = ["| arm | verdict | (1) distilled - S2A, wrong sugg. [95% CI] (> -10?) | "
             "(2) 4-template mean: distilled vs base (>= base - 2?) | "
             "(3) distilled - own-bare-reply control, wrong sugg. [95% CI] (> 0?) | n |",
             "|---|---|---|---|---|---|"]
    for c in claims:
        k = c["criteria"]
        c1, c2, c3 = k["s2a"], k["retention"], k["control"]
        one = (f"{c1['a']:.1f} - {c1['b']:.1f} = {c1['difference']:+.1f} "
               f"[{c1['low']:+.1f}, {c1['high']:+.1f}] {_mark(c1['passed'])}")
        two = (f"{c2['distilled']:.1f} vs {c2['base']:.1f} ({c2['difference']:+.1f} "
               f"[{c2['low']:+.1f}, {c2['high']:+.1f}]) {_mark(c2['passed'])}")
        three = ("not run" if c3["passed"] is None else
                 f"{c3['a']:.1f} - {c3['b']:.1f} = {c3['difference']:+.1f} "
                 f"[{c3['low']:+.1f}, {c3['high']:+.1f}] {_mark(c3['passed'])}")
        lines.append(f"| {c['arm']} | **{c['verdict']}** | {one} | {two} | {three} | "
                     f"{c1['n']} items; {c2['n']} rows |")
    return "\n".join(lines) + "\n"


def _mark(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "not run"}[passed]
