"""`s2jax report ROOT`: accuracy, tokens and paired statistics of a run dir or a dir of run dirs,
written to ROOT/report.{md,json,png} (the logic is `s2jax.report`)."""

from __future__ import annotations

import argparse
import sys

from s2jax.core.storage import require_local


def register(sub: argparse._SubParsersAction) -> None:
    # defaults are ReportSettings' (None here keeps numpy out of building the parser)
    p = sub.add_parser("report", help="per-arm accuracy, tokens and paired tests of finished "
                       "runs, from their per-item rows")
    p.add_argument("root", help="a run dir, or a directory whose subdirectories are run dirs")
    p.add_argument("--margin", type=float, default=None,
                   help="non-inferiority margin against System 2, in percentage points "
                   "(default 10)")
    p.add_argument("--level", type=float, default=None,
                   help="two-sided coverage of every interval (default 0.95)")
    p.add_argument("--resamples", type=int, default=None,
                   help="bootstrap replicates per interval (default 10000)")
    p.add_argument("--seed", type=int, default=None, help="the bootstrap's seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from s2jax.report import ReportSettings, report_root  # numpy and the report only when it runs

    given = {k: getattr(args, k) for k in ("margin", "level", "resamples", "seed")}
    settings = ReportSettings(**{k: v for k, v in given.items() if v is not None})
    require_local(args.root, "report root", "a local or network directory (a gs:// run writes "
                  "its report into its root when it ends)")
    _, paths = report_root(args.root, settings)
    print(paths[0].read_text("utf-8"), end="")
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
