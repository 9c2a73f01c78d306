"""`s2jax run CONFIG [--set key=value ...]`: an experiment end to end (or its sweep)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a configured experiment: generate, vote, train, evaluate")
    p.add_argument("config", help="config file path[:arg] defining get_config(arg)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set sampling.n=8 (repeatable)")
    p.add_argument("--run-dir", default=None,
                   help="artifacts go here (default: runs/<name>); a gs:// URL keeps them on "
                        "Cloud Storage (needs the gcs extra)")
    p.add_argument("--sweep", action="store_true",
                   help="run the config file's sweep() as `s2jax sweep` does, rooted at --run-dir "
                   "(one run dir per arm under it)")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything a run would reject (config, task, model, mesh, "
                        "inputs, run dir), say how many runs passed and exit; "
                        "--print-config prints the resolved config(s)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config(s) as JSON and exit, checking nothing else")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.errors import S2JaxError
    from s2jax.core.overrides import override, parse_assignments
    from s2jax.core.storage import as_path, require_local
    from s2jax.run.config import load_config, sweep_points

    config, namespace = load_config(args.config)
    config = override(config, parse_assignments(args.overrides))
    run_dir = as_path(args.run_dir or Path("runs") / config.name, "--run-dir")
    if args.sweep:
        require_local(run_dir, "--run-dir", "a local or network directory for --sweep (its "
                      "claims and stage commits need one; run arms with --run-dir gs://...)")
        points = sweep_points(namespace, args.config.partition(":")[0], config)
    else:
        points = {"": config}
    if args.print_config:
        for name, cfg in points.items():
            print(json.dumps({"run_dir": str(run_dir / name), "config": cfg.to_json()},
                             default=str))
        return 0
    if args.sweep:
        from s2jax.commands import sweep

        return sweep.run(argparse.Namespace(
            config=args.config, overrides=args.overrides, root=str(run_dir), workers=1,
            worker=None, lease=60.0, reselect_after_test=False, retry_failed=False,
            dry_run=args.dry_run, progress=args.progress, compilation_cache=None))
    if config.uses_protocol:
        raise S2JaxError(f"{args.config}: validation, cross_fit, control and retention run "
                         "with `s2jax sweep CONFIG` (a config without sweep() is one arm)")
    from s2jax.run.pipeline import resolve, run_experiment

    resolve(config, str(run_dir))
    if args.dry_run:
        print("s2jax run: 1 run checked; nothing was done (--dry-run)")
        return 0
    run_experiment(config, str(run_dir), progress=args.progress)
    return 0
