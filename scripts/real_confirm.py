"""The pre-registered confirmatory set (docs/real_preregistration.md) as one resumable command.

  PYTHONPATH=$PWD python3 scripts/real_confirm.py [--quick] [--root DIR] [--arms A,B,...]
                                                  [--hashes] [--stop-at HH:MM] [--claim-only]

Runs the arms of configs/real/confirm.py in their pre-registered order on one sweep root
(default runs/real_confirm, or runs/real_confirm_quick), each as a one-arm sweep sharing the
stages already done; a rerun resumes. Then writes ROOT/report.{md,json,png} (`s2jax report`)
and ROOT/claim.{md,json} (the three criteria, `s2jax.report.claim`). `--quick` is the CI
variant on SmolLM2-135M (a handful of countries): it checks the pipeline, not the result.
`--hashes` prints every arm's config hash and exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from s2jax.core import compile_cache
from s2jax.core.errors import S2JaxError
from s2jax.parallel.platforms import default_to_cpu
from s2jax.run.confirm import (
    hashes,
    load_arms,
    pick,
    run_arms,
    stage_seconds,
    status,
    write_claims,
)

CONFIG = "configs/real/confirm.py"


def _stop_at(spec: str | None) -> float | None:
    if spec is None:
        return None
    try:
        t = dt.datetime.strptime(spec, "%H:%M").time()
    except ValueError:
        raise S2JaxError(f"--stop-at {spec!r}: expected HH:MM (UTC)") from None
    now = dt.datetime.now(dt.UTC)
    return dt.datetime.combine(now.date(), t, dt.UTC).timestamp()


def _worker(spec: str) -> tuple[int, int]:
    i, _, n = spec.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise S2JaxError(f"--worker {spec!r}: expected I/N with 0 <= I < N, e.g. 1/2")
    return int(i), int(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="SmolLM2-135M, a few countries (CI)")
    ap.add_argument("--root", default=None, help="sweep root (default runs/real_confirm[_quick])")
    ap.add_argument("--arms", default=None, help="comma-separated arms to run (default: all)")
    ap.add_argument("--hashes", action="store_true", help="print each arm's config hash")
    ap.add_argument("--stop-at", default=None, metavar="HH:MM",
                    help="start no arm after this UTC time (rerun to resume)")
    ap.add_argument("--together", action="store_true",
                    help="the chosen arms as one sweep (a second worker on the root then runs "
                    "the next arm's stages while waiting; timed together)")
    ap.add_argument("--worker", default="0/1", metavar="I/N",
                    help="be worker I of N on the root (as s2jax sweep --worker)")
    ap.add_argument("--status", action="store_true",
                    help="where each arm stands and the finished base evaluations; run nothing")
    ap.add_argument("--claim-only", action="store_true",
                    help="recompute report and claim from the root's rows, run nothing")
    args = ap.parse_args(argv)
    default_to_cpu()  # as the CLI: no libtpu start-up errors on a machine without an accelerator
    compile_cache.enable()  # as the CLI: the fold models' programs compile once, then load
    arg = "smollm2-135m,quick" if args.quick else "qwen2.5-coder-0.5b"
    arms, claims = load_arms(f"{CONFIG}:{arg}", quick=args.quick)
    if args.hashes:
        for name, h in hashes(arms).items():
            print(f"{name:24s} {h}")
        return 0
    root = Path(args.root or ("runs/real_confirm" + ("_quick" if args.quick else "")))
    chosen = pick(arms, args.arms.split(",") if args.arms else None)
    if args.status:
        print(status(chosen, root))
        print(json.dumps(stage_seconds(root), indent=1))
        return 0
    if not args.claim_only:
        spent = run_arms(chosen, root, progress=sys.stderr.isatty(),
                         stop_at=_stop_at(args.stop_at), together=args.together,
                         worker=_worker(args.worker))
        print("[confirm] wall seconds this call: " + ", ".join(
            f"{a} {s:.0f}" for a, s in spent.items()), flush=True)
    from s2jax.run.sweep import write_report  # numpy/matplotlib only at the end

    write_report(root)
    write_claims(root, claims)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except S2JaxError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
