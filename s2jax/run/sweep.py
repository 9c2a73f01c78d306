"""`s2jax sweep`: the arms of a sweep as one job, every shared stage computed once.

`plan_sweep` resolves every arm (the checks of `s2jax run`, before any work), builds the stage
graph (`s2jax.run.graph`) and says what is shared; `run_worker` takes stages in order, each
claimed (`s2jax.core.claims`) so that any number of workers on one root (local processes, a
SLURM job array, one TPU slice each) compute every stage exactly once, commits each by an
atomic rename (`s2jax.run.store`), and assembles each arm's run dir (`s2jax.run.assemble`) once
its stages are done. A killed worker's stage is taken over by the next worker that finds its
claim abandoned and resumed from its finished shards; the artifacts are the same as one worker's.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.core.claims import ClaimBoard
from s2jax.core.errors import RunFailed, S2JaxError
from s2jax.core.hashing import json_hash
from s2jax.core.ownership import RUN, check_dir
from s2jax.core.rundir import check_creatable, refuse_foreign_dir
from s2jax.run import execute
from s2jax.run.assemble import arm_contents, is_current, write_arm
from s2jax.run.config import ExperimentConfig
from s2jax.run.graph import Graph, Node, add_arm, add_selection, resolve_arm
from s2jax.run.selection import Selection
from s2jax.run.store import LOG, RESERVED, ClaimLost, EventLog, StageStore
from s2jax.run.tb_results import run_hparams, write_tb_results
from s2jax.tasks import TASKS
from s2jax.tasks.task import Task
from s2jax.train.metrics import TB

Log = Callable[[str], None]
FAILED = ".failed"  # claims/<id>.failed: a stage that raised; others skip it and its dependents
MARKER = "sweep.json"  # marks a directory as a sweep root (a user's directory is never used)
OWNER = {"kind": "s2jax sweep"}


@dataclasses.dataclass
class SweepPlan:
    root: Path
    graph: Graph
    store: StageStore


def plan_sweep(arms: Mapping[str, ExperimentConfig], root: str | os.PathLike, *,
               selection: Selection | None = None,
               tasks: Mapping[str, Task] = TASKS) -> SweepPlan:
    """Resolves every arm and builds the stage graph; does no work and writes nothing.

    Args:
      arms: {arm name: config}; each arm's run dir is root/<name>, and its config is recorded
        under that name.
      root: the sweep root (stages, claims and arm run dirs).
      selection: the rule that picks one arm on the validation split, if any.
      tasks: where task names are looked up.
    """
    root = Path(root)
    check_creatable(root, "sweep root")
    refuse_foreign_dir(root, "sweep root", MARKER, OWNER)
    if not arms:
        raise S2JaxError("sweep: no arms (expected sweep() to return at least one)")
    store = StageStore(root)
    resolved = {}
    for name, config in arms.items():
        if name in RESERVED or name.startswith(".") or "/" in name or not name:
            raise S2JaxError(f"sweep arm {name!r}: expected a name that is not one of "
                             f"{RESERVED}, has no '/' and does not start with '.'")
        if config.onpolicy is not None:
            raise S2JaxError(f"sweep arm {name!r}: config onpolicy is set, but a sweep has no "
                             "on-policy stage; run the arm with `s2jax run`")
        config = dataclasses.replace(config, name=name)
        check_dir(root / name, f"sweep arm {name}: run dir", RUN)  # s2jax's own, or new
        resolved[name] = (config, *resolve_arm(name, config, root / name, tasks))
    wanted: dict[str, int] = {}

    def largest(family: str, n: int) -> int:
        wanted[family] = max(wanted.get(family, 0), n)
        return n

    def stored(family: str, n: int) -> int:  # an N=16 set already stored serves N <= 16
        have = [m for m in store.sample_counts(family) if m >= wanted[family]]
        return min(have) if have else wanted[family]

    for n_for in (largest, stored):  # the first pass finds each family's largest N
        graph = Graph(selection)
        for name, (config, d, splits) in resolved.items():
            add_arm(graph, name, config, d, splits, n_for)
        add_selection(graph)
    return SweepPlan(root, graph, store)


def _work(node: Node) -> tuple[str, int]:
    """(unit, amount) of a stage's work, for the plan's cost estimate."""
    job = node.job
    if node.kind in ("eval", "generate"):
        n = job["params"].n * len(job["program"].stages)
        if node.kind == "generate" and job["config"].perturb:
            n *= 2
        return "generations", len(job["examples"]) * n
    if node.kind == "finetune":
        t = job["d"].train
        return "train rows", (t.steps * t.rows_per_step) if t.steps else 0
    return "", 0


def describe(plan: SweepPlan) -> str:
    """The plan: each stage, the arms sharing it, its state, and the work saved by sharing."""
    graph, store = plan.graph, plan.store
    lines = [f"sweep {plan.root}: {len(graph.arms)} arm(s), {len(graph.nodes)} stage(s)"]
    shared: dict[str, int] = {}
    separate: dict[str, int] = {}
    for node in graph.ordered():
        users = graph.uses[node.id]
        unit, amount = _work(node)
        state = "done" if store.done(node.id) else "to run"
        who = "all arms" if len(users) == len(graph.arms) > 1 else ", ".join(users)
        what = f"{amount:,} {unit}" if unit else ""
        lines.append(f"  {node.id:30s} {state:6s} {node.label:34s} {what:>16s}  {who}")
        if unit:
            shared[unit] = shared.get(unit, 0) + amount
            per_arm = amount
            if node.kind == "generate":  # a separate run samples only its own N
                per_arm = amount // node.job["params"].n
                separate[unit] = separate.get(unit, 0) + sum(
                    per_arm * graph.arms[a].d.sampling.n for a in users)
            else:
                separate[unit] = separate.get(unit, 0) + amount * len(users)
    stages_alone = sum(len(u) for u in graph.uses.values())
    lines.append(f"estimated cost: {len(graph.nodes)} stages instead of {stages_alone} as "
                 "separate runs; " + "; ".join(f"{shared[u]:,} {u} instead of {separate[u]:,}"
                                                 for u in shared if shared[u]))
    if graph.selection:
        lines.append(f"selection: {graph.selection.metric} of the distilled model on the "
                     "validation split, recorded before any test evaluation")
    return "\n".join(lines)


@dataclasses.dataclass
class Worker:
    """One worker's view: which of n it is, how long a silent claim lasts, what it may do."""

    index: int = 0
    count: int = 1
    lease: float = 60.0
    reselect_after_test: bool = False
    progress: bool = False
    poll: float = 0.5  # seconds between looks at the root while others hold every ready stage

    @property
    def label(self) -> str:
        return f"w{self.index}of{self.count}-{socket.gethostname()}-{os.getpid()}"


def _check_single_process() -> None:
    jax = sys.modules.get("jax")
    if jax is not None and jax.process_count() > 1:
        raise S2JaxError("s2jax sweep: a worker is one process (got a multi-process JAX run); "
                         "start one worker per host with --worker i/n")


def run_worker(plan: SweepPlan, worker: Worker | None = None, *, log: Log = print,
               engine: execute.Engine | None = None) -> dict:
    """Works on the plan until every stage and arm is done; returns {arm: results}.

    `engine` keeps a loaded model across calls (plans run one after another in one process).
    Raises S2JaxError when a stage fails (in this worker or, recorded, in another), once
    nothing else can be done.
    """
    _check_single_process()
    worker = worker or Worker()
    graph, store, root = plan.graph, plan.store, plan.root
    if not (root / MARKER).is_file():
        write_json(root / MARKER, OWNER)
    board = ClaimBoard(root, worker.label, lease=worker.lease)
    event = EventLog(root, worker.label)
    engine = engine or execute.Engine(progress=worker.progress)
    order = graph.ordered()
    while True:
        pending = [n for n in order if not store.done(n.id)]
        failed = {n.id for n in pending if (board.dir / f"{n.id}{FAILED}").is_file()}
        ready = [n for n in pending if n.id not in failed
                 and all(store.done(d) for d in n.deps)]
        if ready:  # worker i starts at the i-th ready stage, so workers spread over them
            start = worker.index % len(ready)
            if any(_attempt(n, plan, board, engine, event, worker, log)
                   for n in ready[start:] + ready[:start]):
                continue
        elif not pending:
            done = _assemble_arms(plan, board, event, log)
            if done is not None:
                return done
        elif not _runnable(pending, failed, graph):
            raise RunFailed(f"sweep {root}: stage(s) failed: {_failures(board, failed)}; fix "
                             "the cause and rerun with --retry-failed")
        time.sleep(worker.poll)


def _runnable(pending: list[Node], failed: set[str], graph: Graph) -> bool:
    """Whether any pending stage can still run (neither failed nor after a failed one)."""
    blocked = set(failed)
    for node in pending:  # pending is in dependency order
        if any(d in blocked for d in node.deps):
            blocked.add(node.id)
    return any(n.id not in blocked for n in pending)


def _failures(board: ClaimBoard, failed: set[str]) -> str:
    return "; ".join(f"{sid}: {(board.dir / f'{sid}{FAILED}').read_text().strip()}"
                     for sid in sorted(failed))


def _attempt(node: Node, plan: SweepPlan, board: ClaimBoard, engine: execute.Engine,
             event: EventLog, worker: Worker, log: Log) -> bool:
    """Claims and runs one stage; False if another worker holds it."""
    store = plan.store
    claim = board.try_claim(node.id)
    if claim is None:
        return False
    try:
        if store.done(node.id):  # committed between our look and our claim
            return True
        work, resumed = store.begin(node.id, claim)
        event("start", node.id, resumed=resumed)
        log(f"[{node.id}] {'resuming' if resumed else 'running'} (arms: "
            f"{', '.join(plan.graph.uses[node.id])})")
        try:
            if node.kind == "select":
                record = _select(node, work, plan, worker)
            else:
                execute.RUNNERS[node.kind](node, work, store, engine, log)
            store.commit(node.id, node.kind, node.spec, claim)
        except ClaimLost as e:
            event("lost", node.id)
            log(f"[{node.id}] {e}")
            return True
        except S2JaxError as e:
            write_json(board.dir / f"{node.id}{FAILED}", {"error": str(e)})
            event("fail", node.id, error=str(e))
            raise
        event("commit", node.id)
        if node.kind == "select":
            write_json(plan.root / "selection.json", record)
            log(f"[selection] chose {record['chosen']} on the validation split")
        return True
    finally:
        claim.release()


def tested_before_selection(plan: SweepPlan) -> list[str]:
    """The arms' test evaluations already committed while the selection is not (if it is new,
    it would be made after their numbers could be seen)."""
    graph, store = plan.graph, plan.store
    if graph.select_id is None or store.done(graph.select_id):
        return []
    return [n.id for n in graph.nodes.values()
            if n.phase in ("eval_distilled_test", "retention") and store.done(n.id)]


def check_selection(plan: SweepPlan, allow_after_test: bool) -> None:
    """Refuses, before any work, a selection that would come after test numbers exist."""
    seen = tested_before_selection(plan)
    if seen and not allow_after_test:
        raise S2JaxError(f"sweep {plan.root}: test evaluations of this sweep's arms exist "
                         f"already ({seen[0]}, ...) and the selection (rule or arms changed) is "
                         "new: it would be made after test numbers were seen; pass "
                         "--reselect-after-test to make it anyway (the record and every arm's "
                         "results say so)")


def _select(node: Node, work: Path, plan: SweepPlan, worker: Worker) -> dict:
    """The selection record (marked when made after test evaluations existed)."""
    check_selection(plan, worker.reselect_after_test)
    return execute.run_select(node, work, plan.store, plan.graph,
                              after_test=tested_before_selection(plan))


def _assemble_arms(plan: SweepPlan, board: ClaimBoard, event: EventLog, log: Log
                   ) -> dict | None:
    """Writes every arm's run dir that is not current; None while another worker is at it."""
    graph, store, root = plan.graph, plan.store, plan.root
    selection = None
    if graph.select_id:
        selection = execute.read_json(store.path(graph.select_id) / "selection.json")
    out, waiting = {}, False
    for name, roles in graph.arms.items():
        results, rows, retention = arm_contents(roles, store, selection)
        out[name] = results
        if is_current(root / name, results):
            continue
        claim = board.try_claim(f"arm-{name}-{json_hash(results)}")
        if claim is None:
            waiting = True
            continue
        try:
            if not is_current(root / name, results):
                write_arm(root / name, roles, results, rows, retention)
                write_tb_results(root / LOG / TB / name, results, run_hparams(roles.d))
                event("arm", name)
                log(f"[{name}] wrote {root / name}")
        finally:
            claim.release()
    return None if waiting else out


def write_report(root: str | os.PathLike, log: Log = print) -> None:
    """report.{md,json,png} of the sweep's arms, as `s2jax report ROOT` writes them.

    The arms' run dirs are what the report reads; a report that cannot be made is logged, and
    the arms stand (as at the end of `s2jax run`).
    """
    from s2jax.report import report_root  # numpy/matplotlib: only a finished sweep pays

    try:
        _, paths = report_root(root)
    except S2JaxError as e:
        log(f"WARNING: report not written: {e}")
        return
    log(f"report: {', '.join(str(p) for p in paths)}")
