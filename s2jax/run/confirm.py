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
             together: bool = False) -> dict[str, float]:
    """Runs each arm in order on `root`; returns {arm: seconds it added} of this call.

    `stop_at` (a `time.time()`): no arm starts after it (the arms left are reported).
    `together`: the arms as one sweep (stages by phase across arms, so a worker waiting on
    another's stage runs the next arm's), timed as one entry named "a+b".
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
        run_worker(plan, Worker(progress=progress), log=log, engine=engine)
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
