"""`s2jax vote`: filter generations.jsonl into the System 1 distillation set (+ stats)."""

from __future__ import annotations

import argparse
import sys

from s2jax.core.storage import require_local
from s2jax.distill.dataset import FILTERS, TARGETS
from s2jax.distill.vote import TIE_POLICIES
from s2jax.tasks import TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vote", help="vote over generations; write the distillation set, provenance and stats"
    )
    p.add_argument("--generations", required=True, help="generations.jsonl of generate-method")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--out", required=True,
                   help="output directory (a new one, or a set made from the same generations)")
    p.add_argument("--filter", default="majority", choices=FILTERS,
                   help="majority vote, the USC stage's pick, or consistency under perturbation")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="minimum share of the N samples that must agree with the majority")
    p.add_argument("--tie-policy", default="drop", choices=TIE_POLICIES)
    p.add_argument("--target", default="answer", choices=TARGETS,
                   help="the assistant turn: the final answer, the kept sample's final reply, or "
                        "its whole trace then '#### <answer>' (for a removal curriculum)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.errors import S2JaxError
    from s2jax.core.ownership import DISTILL_SET, check_dir
    from s2jax.distill.dataset import DistillConfig
    from s2jax.distill.vote import VoteConfig
    from s2jax.methods.records import read_finished_generations, read_meta
    from s2jax.run.stages import distill_stage, require_examples
    from s2jax.tasks import TASKS

    task = TASKS[args.task]
    try:
        config = DistillConfig(args.filter, VoteConfig(args.threshold, args.tie_policy),
                               args.target)
    except ValueError as e:
        raise S2JaxError(f"--threshold/--tie-policy: {e}") from None
    require_local(args.out, "--out", "a local or network directory")
    check_dir(args.out, "--out", DISTILL_SET, key=str(args.generations),
              key_name="generations file", whole=True)
    records = read_finished_generations(args.generations)
    meta = read_meta(args.generations)
    dset, warnings = distill_stage(records, task, config, args.out,
                                   generations=str(args.generations), model=meta.get("model"),
                                   sampling=meta.get("sampling"))
    require_examples(dset.stats.to_json(), str(args.generations))
    s = dset.stats
    dropped = ", ".join(f"{k} {v}" for k, v in s.reasons.items() if k != "kept" and v)
    print(f"kept {s.kept}/{s.inputs} inputs ({dropped or 'none dropped'}) -> {args.out}")
    for w in warnings:
        print(f"s2jax vote: WARNING (non-result?): {w}", file=sys.stderr)
    return 0
