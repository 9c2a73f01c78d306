"""`s2jax sweep CONFIG`: every arm of a config file's sweep(), shared stages computed once."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.storage import require_local


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a config's sweep() as one job: shared stages once, "
                       "any number of workers on one root")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="config file path[:arg] defining get_config(arg) and "
                   "sweep() (without sweep(): one arm)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of every arm, e.g. --set sampling.seed=1 (repeatable)")
    p.add_argument("--root", default=None,
                   help="sweep root: stages/, claims/ and one run dir per arm (default: "
                   "runs/<name>)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="start K local worker processes on the root")
    p.add_argument("--worker", default=None, metavar="I/N",
                   help="be worker I of N (0-based; a SLURM array task or a TPU slice each); "
                   "every worker runs the same command on the same root")
    p.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                   help="a claim whose heartbeat is silent this long is taken over (a worker on "
                   "this host that died is taken over at once)")
    p.add_argument("--reselect-after-test", action="store_true",
                   help="allow a selection when test evaluations of the arms exist (recorded "
                   "as such; the arms' test figures are then exploratory)")
    p.add_argument("--retry-failed", action="store_true",
                   help="retry stages that failed in an earlier attempt")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: with one worker)")


def _worker(spec: str | None) -> tuple[int, int]:
    if spec is None:
        return 0, 1
    i, _, n = spec.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise S2JaxError(f"--worker {spec}: expected I/N with 0 <= I < N, e.g. 0/4")
    return index, count


def arms_of(args: argparse.Namespace):
    """({arm name: config}, the selection rule or None, the default root)."""
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.overrides import override, parse_assignments
    from s2jax.run.config import load_config, sweep_points
    from s2jax.run.selection import rule_of

    config, namespace = load_config(args.config)
    config = override(config, parse_assignments(args.overrides))
    if "sweep" in namespace:  # user code: its failures and odd returns are one-line errors
        arms = sweep_points(namespace, args.config.partition(":")[0], config)
    else:
        arms = {config.name: config}
    return arms, rule_of(namespace), Path("runs") / config.name


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.run.sweep import (
        FAILED,
        Worker,
        check_selection,
        describe,
        plan_sweep,
        run_worker,
        write_report,
    )

    index, count = _worker(args.worker)
    if args.workers < 1 or (args.workers > 1 and args.worker):
        raise S2JaxError(f"--workers {args.workers}: expected >= 1, and not with --worker")
    if not args.lease > 0:
        raise S2JaxError(f"--lease {args.lease}: expected seconds > 0")
    if args.root:
        require_local(args.root, "--root", "a local or network directory (its claims and stage "
                      "commits need one; `s2jax run --run-dir gs://...` runs one arm there)")
    arms, rule, default_root = arms_of(args)
    root = Path(args.root) if args.root else default_root
    plan = plan_sweep(arms, root, selection=rule)
    if index == 0:
        print(describe(plan), flush=True)
    check_selection(plan, args.reselect_after_test)
    if args.dry_run:
        return 0
    if args.retry_failed and index == 0:
        for path in (root / "claims").glob(f"*{FAILED}"):
            path.unlink()
    if args.workers > 1:
        return _spawn(args, root)
    progress = args.progress if args.progress is not None else count == 1
    run_worker(plan, Worker(index, count, lease=args.lease, progress=progress,
                            reselect_after_test=args.reselect_after_test))
    write_report(root)
    print(f"s2jax sweep: {len(arms)} arm(s) done under {root}", flush=True)
    return 0


def _spawn(args: argparse.Namespace, root: Path) -> int:
    """K local workers on `root`, each this command as worker i of K; the worst exit code."""
    argv = ["sweep", args.config, *(x for kv in args.overrides for x in ("--set", kv)),
            "--root", str(root), "--lease", str(args.lease), "--no-progress"]
    if args.reselect_after_test:
        argv.append("--reselect-after-test")
    if args.compilation_cache:
        argv = ["--compilation-cache", args.compilation_cache, *argv]
    procs = [subprocess.Popen([sys.executable, "-m", "s2jax.cli", *argv, "--worker",
                               f"{i}/{args.workers}"]) for i in range(args.workers)]
    return max(p.wait() for p in procs)
