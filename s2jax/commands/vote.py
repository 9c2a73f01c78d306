"""`s2jax vote`: filter generations.jsonl into the System 1 distillation set (+ stats)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from s2jax.distill import FILTERS
    from s2jax.tasks import TASKS
    from s2jax.vote import TIE_POLICIES

    p = sub.add_parser(
        "vote", help="vote over generations; write the distillation set, provenance and stats"
    )
    p.add_argument("--generations", required=True, help="generations.jsonl of generate-method")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--out", required=True, help="output directory (replaced atomically)")
    p.add_argument("--filter", default="majority", choices=FILTERS,
                   help="majority vote, the USC stage's pick, or consistency under perturbation")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="minimum share of the N samples that must agree with the majority")
    p.add_argument("--tie-policy", default="drop", choices=TIE_POLICIES)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from s2jax.commands.generate_method import meta_path
    from s2jax.distill import (
        DistillConfig,
        build_distill_set,
        provenance,
        write_distill_set,
    )
    from s2jax.errors import S2JaxError
    from s2jax.methods.records import read_generations
    from s2jax.tasks import TASKS
    from s2jax.vote import VoteConfig

    task = TASKS[args.task]
    try:
        config = DistillConfig(args.filter, VoteConfig(args.threshold, args.tie_policy))
    except ValueError as e:
        raise S2JaxError(str(e)) from e
    records = read_generations(args.generations)
    wrong = sorted({r["task"] for r in records} - {task.name})
    if wrong:
        raise S2JaxError(f"{args.generations} holds task(s) {wrong}, not --task {task.name}")
    meta = {}
    if meta_path(args.generations).exists():
        meta = json.loads(meta_path(args.generations).read_text("utf-8"))
    dset = build_distill_set(records, task, config)
    prov = provenance(records, task, config, dset, generations=str(args.generations),
                      model=meta.get("model"), sampling=meta.get("sampling"))
    path = write_distill_set(args.out, dset, prov)
    s = dset.stats
    dropped = ", ".join(f"{k} {v}" for k, v in s.reasons.items() if k != "kept" and v)
    print(f"kept {s.kept}/{s.inputs} inputs ({dropped or 'none dropped'}) -> {path}")
    return 0
