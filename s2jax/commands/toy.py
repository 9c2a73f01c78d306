"""`s2jax toy pretrain`: rebuild the toy base model from its deterministic recipe; `s2jax toy
multiply`: k x k multiplication from scratch, stepwise or answer-only (`s2jax.toy.multiply`)."""

from __future__ import annotations

import argparse
import json

from s2jax.core.overrides import add_field_flags
from s2jax.core.storage import require_local
from s2jax.toy.multiply import MultiplyConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toy", help="the toy world: rebuild the shipped base model")
    toy = p.add_subparsers(dest="toy_command", required=True)
    pre = toy.add_parser("pretrain", help="pretrain the toy base model (deterministic recipe)")
    pre.add_argument("--out", required=True, help="HF checkpoint directory to write (a new "
                     "path; the training run goes beside it, to OUT.run, and resumes there)")
    pre.add_argument("--steps", type=int, default=None, help="optimizer steps (default: recipe)")
    pre.add_argument("--system2", type=int, default=None,
                     help="System 2 transcripts per task in the corpus (default: recipe)")
    pre.add_argument("--system1", type=int, default=None,
                     help="System 1 answers per task in the corpus (default: recipe)")
    pre.add_argument("--seed", type=int, default=None)
    pre.add_argument("--check", type=int, default=20,
                     help="held-out inputs per task for the capability check (0: skip)")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(func=run_pretrain)
    mul = toy.add_parser("multiply", help="k x k multiplication from scratch: stepwise "
                         "internalization of the partial-product trace, or answers only")
    mul.add_argument("--out", required=True, help="output directory (a rerun resumes it)")
    add_field_flags(mul, MultiplyConfig)
    mul.set_defaults(func=run_multiply)


def run_pretrain(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.errors import NonResult
    from s2jax.core.overrides import override
    from s2jax.toy.pretrain import PretrainConfig, check_outputs, pretrain

    require_local(args.out, "--out", "a local or network directory")
    check_outputs(args.out)
    # option -> PretrainConfig fields (--seed seeds the corpus and the training)
    fields = {"steps": ("steps",), "system2": ("corpus.system2",),
              "system1": ("corpus.system1",), "seed": ("seed", "corpus.seed")}
    flag_of = {key: f"--{opt}" for opt, keys in fields.items() for key in keys}
    config = override(PretrainConfig(), {key: getattr(args, opt) for opt, keys in fields.items()
                                         for key in keys if getattr(args, opt) is not None},
                      name=flag_of.__getitem__)
    summary = pretrain(config, args.out, progress=not args.no_progress)
    print(json.dumps(summary))
    if not args.check:
        return 0
    import s2jax
    from s2jax.sampling import Sampler
    from s2jax.toy.capability import capability

    model, tokenizer = s2jax.load(args.out)
    report = capability(Sampler(model, tokenizer, max_len=512), args.check)
    print(json.dumps(report))
    if not report["passed"]:
        raise NonResult(f"{args.out}: the capability check failed (see the report above): "
                        "the model does not learn the System 2 methods")
    return 0


def run_multiply(args: argparse.Namespace) -> int:
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.core.overrides import field_changes, field_flag, override
    from s2jax.toy.multiply import run_multiply

    config = override(MultiplyConfig(), field_changes(args, MultiplyConfig), name=field_flag)
    results = run_multiply(config, args.out)
    print(json.dumps({k: results[k] for k in ("arm", "params", "steps", "seconds",
                                               "cpu_seconds", "final")}))
    return 0
