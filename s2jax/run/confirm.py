"""A pre-registered set of arms run one after another on one sweep root, then the claim.

The arms come from a config file that defines `get_config(arg)` (the shared part), `arms(base,
quick)` ({name: config}, in run order) and `CLAIMS` ({arm: its control arm}); e.g.
configs/real/confirm.py. Each arm is planned and run as a one-arm sweep on the same root, so
stages shared with arms already done (the base evaluations, System 2's samples) are reused, a
rerun resumes where it stopped, and each arm's wall time is what it added
(`ROOT/timings.json`). At the end the root's report (`s2jax report`) and the claim of every
`CLAIMS` arm (`ROOT/claim.{json,md}`) are written.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from s2jax.core.atomic import atomic_open, write_json
from s2jax.core.errors import S2JaxError
from s2jax.run.config import ExperimentConfig, load_config

Log = Callable[[str], None]
TIMINGS = "timings.json"


def load_arms(spec: str, quick: bool = False) -> tuple[dict[str, ExperimentConfig], dict]:
    """({arm: config named for it}, CLAIMS) of a confirm config file `path[:arg]`."""
    path = spec.partition(":")[0]
    base, namespace = load_config(spec)
    if not callable(namespace.get("arms")) or not isinstance(namespace.get("CLAIMS"), dict):
        raise S2JaxError(f"{path}: expected arms(base, quick) and a CLAIMS dict beside "
                         "get_config")
    arms = namespace["arms"](base, quick)
    claims = {a: c for a, c in namespace["CLAIMS"].items() if a in arms}
    return {n: dataclasses.replace(c, name=n) for n, c in arms.items()}, claims


def hashes(arms: Mapping[str, ExperimentConfig]) -> dict[str, str]:
    """Each arm's config hash (`ExperimentConfig.fingerprint`, as its run dir records it)."""
    return {name: config.fingerprint() for name, config in arms.items()}


def pick(arms: Mapping[str, ExperimentConfig], names: Sequence[str] | None
         ) -> dict[str, ExperimentConfig]:
    """The named arms in run order (all when `names` is None)."""
    if names is None:
        return dict(arms)
    unknown = [n for n in names if n not in arms]
    if unknown:
        raise S2JaxError(f"--arms: unknown arm {unknown[0]!r}; expected some of "
                         f"{', '.join(arms)}")
    return {n: c for n, c in arms.items() if n in names}


def run_arms(arms: Mapping[str, ExperimentConfig], root: str | Path, *, log: Log = print,
             progress: bool = False, stop_at: float | None = None,
             together: bool = False, worker: tuple[int, int] = (0, 1)) -> dict[str, float]:
    """Runs each arm in order on `root`; returns {arm: seconds it added} of this call.

    `stop_at` (a `time.time()`): no arm starts after it (the arms left are reported).
    `together`: the arms as one sweep (stages by phase across arms, so a worker waiting on
    another's stage runs the next arm's), timed as one entry named "a+b". `worker` (i, n):
    this process is worker i of n on the root (`s2jax sweep --worker`): it starts at the i-th
    ready stage, so workers spread over the stages.
    """
    if together and len(arms) > 1:
        configs = dict(arms)
        arms = {"+".join(configs): None}
    from s2jax.run import execute  # JAX: only when something runs
    from s2jax.run.sweep import Worker, plan_sweep, run_worker

    root = Path(root)
    engine = execute.Engine(progress=progress)
    spent = {}
    for name, config in arms.items():
        if stop_at is not None and time.time() > stop_at:
            log(f"[confirm] stopping before {name}: past the time limit; rerun to resume")
            break
        plan = plan_sweep(configs if config is None else {name: config}, root)
        todo = [n for n in plan.graph.nodes if not plan.store.done(n)]
        log(f"[confirm] {name}: {len(todo)} of {len(plan.graph.nodes)} stage(s) to run")
        start = time.time()
        run_worker(plan, Worker(*worker, progress=progress), log=log, engine=engine)
        spent[name] = round(time.time() - start, 1)
        if todo:
            record_time(root, name, spent[name], len(todo))
    return spent


def record_time(root: Path, arm: str, seconds: float, stages: int) -> None:
    """Adds an arm's wall time (the stages it ran, shared ones counted by the first arm)."""
    path = root / TIMINGS
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[arm] = {"seconds": times.get(arm, {}).get("seconds", 0) + seconds,
                  "stages_run": times.get(arm, {}).get("stages_run", 0) + stages}
    write_json(path, times)


def write_claims(root: str | Path, claims: Mapping[str, str], log: Log = print) -> list[dict]:
    """ROOT/claim.{json,md} for every claim arm that has finished; returns the claims."""
    from s2jax.report.claim import claim_of_root, render  # numpy: only once arms are done

    root = Path(root)
    done = [claim_of_root(root, arm, control) for arm, control in claims.items()
            if (root / arm / "eval" / "distilled.jsonl").is_file()]
    if done:
        write_json(root / "claim.json", done)
        with atomic_open(root / "claim.md") as f:
            f.write(render(done))
        log(render(done))
    return done


def stage_seconds(root: str | Path) -> dict[str, dict[str, float]]:
    """Per finished arm, the wall seconds of the stages it used (each stage's log/timing.json),
    by kind: {"arm": {"base_eval", "generate", "finetune", "distilled_eval", "total"}}. A stage
    shared by several arms (the base evaluations, System 2's samples) counts in each."""
    root = Path(root)
    out = {}
    for results in sorted(root.glob("*/results.json")):
        stages = json.loads(results.read_text())["stages"]
        kinds = {"base_eval": list(stages["base"].values())}
        for fold in stages["folds"]:
            kinds.setdefault("generate", []).append(fold["generate"])
            kinds.setdefault("finetune", []).append(fold["finetune"])
            kinds.setdefault("distilled_eval", []).extend(fold["eval"].values())
        row = {}
        for kind, ids in kinds.items():
            row[kind] = round(sum(_seconds(root, i) for i in dict.fromkeys(ids)), 1)
        row["total"] = round(sum(row.values()), 1)
        out[results.parent.name] = row
    return out


def _seconds(root: Path, stage: str) -> float:
    path = root / "stages" / stage / "log" / "timing.json"
    return json.loads(path.read_text())["seconds"] if path.is_file() else 0.0


def status(arms: Mapping[str, ExperimentConfig], root: str | Path) -> str:
    """Where each arm stands (no work is done): its stages done / to run, the wall seconds of
    those done, and the accuracy by template (Wilson 95%) of every finished base evaluation,
    read from the stage's per-item rows."""
    from s2jax.report.stats import wilson  # numpy: only for the status lines
    from s2jax.run.sweep import plan_sweep  # the stage graph: only when asked

    root = Path(root)
    plan = plan_sweep(dict(arms), root)
    lines = []
    for name, roles in plan.graph.arms.items():
        ids = [*roles.base.values(), *(i for f in roles.folds for i in (
            f.generate, f.distill, f.finetune, *f.evals.values()))]
        done = [i for i in dict.fromkeys(ids) if plan.store.done(i)]
        lines.append(f"{name}: {len(done)} of {len(dict.fromkeys(ids))} stages done, "
                     f"{sum(_seconds(root, i) for i in done):.0f} s of stage time")
    for (system, split), sid in next(iter(plan.graph.arms.values())).base.items():
        if not plan.store.done(sid):
            lines.append(f"base {system} on {split}: not done ({sid})")
            continue
        per: dict[str, list[float]] = {}
        for r in plan.store.rows(sid):
            per.setdefault(r.get("template") or "", []).append(r["score"])
        for t, scores in sorted(per.items()):
            ci = wilson(sum(scores), len(scores))
            lines.append(f"base {system} on {split} {t}: {100 * ci.estimate:.1f}% "
                         f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}] of {len(scores)} "
                         f"({sid}, {_seconds(root, sid):.0f} s)")
    return "\n".join(lines)
