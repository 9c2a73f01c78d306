"""An arm's run dir, assembled from the stages it used: what `s2jax report` reads.

    ROOT/<arm>/config.json            {"fingerprint", "config"}: the arm's config, named for it
    ROOT/<arm>/results.json           name, task, method, teacher (a checkpoint apart from the
                                      student), control, "rows" (System 1, System 2,
                                      distilled on the test split), "validation" (the same on
                                      the validation split), "distill" (the filter's counts),
                                      "retention", "warnings", "exploratory", "selection",
                                      "stages" (the id of every stage it used)
    ROOT/<arm>/eval/<system>.jsonl    per-item rows (id, answer, score, tokens, replies) with
                                      "split"; with folds, the distilled rows of every fold
                                      (each item once) with "fold"
    ROOT/<arm>/retention/<suite>/{base,distilled}.jsonl

Everything is a function of the committed stages and the selection record, so two sweeps that
ran the same stages assemble the same bytes. No wall-clock time is written here (each stage's
is in its log/timing.json).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from s2jax.core.atomic import write_json, write_jsonl
from s2jax.core.ownership import RUN, replace_dir
from s2jax.run.execute import EMPTY
from s2jax.run.graph import TEST, ArmRoles
from s2jax.run.selection import SPLIT, metrics
from s2jax.run.stages import MAX_UNREADABLE_SHARE
from s2jax.run.store import StageStore

SYSTEMS = ("system1", "system2", "distilled")


def summary(system: str, method: str, rows: Sequence[Mapping], split: str = TEST) -> dict:
    """A results table row of per-item rows (as `EvalResult`, without wall time)."""
    m = metrics(rows)
    return {"system": system, "method": method, "split": split, "accuracy": m["accuracy"],
            "tokens_per_answer": m["tokens_per_answer"], "examples": len(rows),
            "abstentions": sum(r["answer"] is None for r in rows)}


def _rows(store: StageStore, sid: str) -> list[dict] | None:
    return None if (store.path(sid) / EMPTY).is_file() else store.rows(sid)


def _split_rows(roles: ArmRoles, store: StageStore
                ) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """({system: rows of every split}, {split: its table rows}); with folds, the distilled rows
    of every fold in the base rows' order, each marked with its fold."""
    d = roles.d
    rows: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    tables: dict[str, list[dict]] = {}
    for split in roles.splits:
        table, order = [], {}
        for system, program in (("system1", d.system1), ("system2", d.program)):
            part = [{**r, "split": split} for r in store.rows(roles.base[(system, split)])]
            if system == "system1":  # every input (System 2's may be a subset: system2_on)
                order = {r["id"]: i for i, r in enumerate(part)}
            rows[system] += part
            table.append(summary(system, program.name, part, split))
        fold_rows = [_rows(store, f.evals[split]) for f in roles.folds]
        if all(r is not None for r in fold_rows):
            many = len(roles.folds) > 1
            part = sorted(({**r, "split": split, **({"fold": k} if many else {})}
                           for k, rs in enumerate(fold_rows) for r in rs),
                          key=lambda r: order[r["id"]])
            rows["distilled"] += part
            table.append(summary("distilled", d.system1.name, part, split))
        tables[split] = table
    return {s: r for s, r in rows.items() if r}, tables


def _warnings(stats: Sequence[Mapping], test: Sequence[Mapping]) -> list[str]:
    """The filter's warnings (per fold), an empty filter, and unreadable test answers."""
    out = []
    for k, s in enumerate(stats):
        fold = f"fold {k}: " if len(stats) > 1 else ""
        out += [fold + w for w in s["warnings"]]
        if not s["stats"]["kept"]:
            out.append(f"{fold}nothing to distil: the filter kept 0 of "
                       f"{s['stats']['inputs']} inputs")
    for row in test:
        if row["examples"] and row["abstentions"] > MAX_UNREADABLE_SHARE * row["examples"]:
            out.append(f"{row['system']} ({row['method']}): no answer read in "
                       f"{row['abstentions']} of {row['examples']} test examples")
    return out


def _retention(roles: ArmRoles, store: StageStore) -> tuple[dict, dict[str, list[dict]]]:
    """({suite: {"base", "distilled": table row}}, {"suite/who": rows})."""
    table, rows = {}, {}
    for suite, who in roles.retention.items():
        table[suite] = {}
        for part, sid in who.items():
            got = _rows(store, sid)
            if got is not None:
                rows[f"{suite}/{part}"] = got
                table[suite][part] = summary(part, "", got)
    return table, rows


def _selected(results: dict, name: str, selection: Mapping) -> None:
    """Marks `results` chosen or exploratory by the selection record."""
    results["exploratory"] = selection["chosen"] != name or selection["after_test"]
    results["selection"] = {k: selection[k] for k in ("chosen", "config", "rule", "after_test")}
    if selection["after_test"]:
        results["warnings"].append("re-selected after test evaluations existed "
                                   "(--reselect-after-test): the test figures of the chosen "
                                   "arm are not a confirmatory result")


def arm_contents(roles: ArmRoles, store: StageStore, selection: Mapping | None
                 ) -> tuple[dict, dict[str, list[dict]], dict[str, list[dict]]]:
    """(results.json, {system: rows}, {"suite/who": rows}) of one arm."""
    d, config = roles.d, roles.config
    rows, tables = _split_rows(roles, store)
    stats = [json.loads((store.path(f.distill) / "distill.json").read_text()) for f in roles.folds]
    retention, retention_rows = _retention(roles, store)
    folds = len(roles.folds) > 1
    results = {
        "name": roles.name, "config": config.fingerprint(), "task": d.task.name,
        "method": d.program.name, **({"teacher": d.teacher} if d.teacher else {}),
        "control": config.control or None, "rows": tables[TEST],
        **({"validation": tables[SPLIT]} if SPLIT in tables else {}),
        "distill": {"folds": [s["stats"] for s in stats]} if folds else stats[0]["stats"],
        **({"folds": len(roles.folds), "fold_seed": config.cross_fit.seed} if folds else {}),
        **({"retention": retention} if retention else {}),
        "warnings": _warnings(stats, tables[TEST]),
        "stages": stage_ids(roles),
    }
    if selection is not None:
        _selected(results, roles.name, selection)
    return results, rows, retention_rows


def stage_ids(roles: ArmRoles) -> dict:
    return {"base": {f"{s}/{split}": i for (s, split), i in roles.base.items()},
            "folds": [{"generate": f.generate, "distill": f.distill, "finetune": f.finetune,
                       "eval": f.evals} for f in roles.folds],
            **({"retention": roles.retention} if roles.retention else {})}


def arm_config(roles: ArmRoles) -> dict:
    return {"fingerprint": roles.config.fingerprint(), "config": roles.config.to_json()}


def is_current(arm_dir: Path, results: dict) -> bool:
    """Whether `arm_dir` already holds exactly these results."""
    try:
        return json.loads((arm_dir / "results.json").read_text()) == json.loads(
            json.dumps(results))
    except (OSError, ValueError):
        return False


def write_arm(arm_dir: Path, roles: ArmRoles, results: dict, rows: Mapping[str, list[dict]],
              retention_rows: Mapping[str, list[dict]]) -> None:
    """Writes (or replaces, as a whole) the arm's run dir: refused once anyone changed it."""
    # keyed as `s2jax run` keys a run dir: the sweep's own check of the arm (resolve) accepts it
    with replace_dir(arm_dir, RUN, key=roles.d.fingerprint,
                     what=f"sweep arm {arm_dir.name}: run dir") as tmp:
        write_json(tmp / "config.json", arm_config(roles))
        for system, part in rows.items():
            write_jsonl(tmp / "eval" / f"{system}.jsonl", part)
        for name, part in retention_rows.items():
            write_jsonl(tmp / "retention" / f"{name}.jsonl", part)
        write_json(tmp / "results.json", results)
