"""The `s2jax` console script: a thin dispatcher; each subcommand lives in `s2jax.commands`."""

from __future__ import annotations

import argparse
import sys

from s2jax.distributed import detect_launcher, initialize
from s2jax.errors import S2JaxError


def _parser() -> argparse.ArgumentParser:
    # Imports are explicit (no registry) and cheap: command modules import JAX lazily.
    from s2jax.commands import (
        convert,
        demo,
        fetch_models,
        generate,
        generate_method,
        inspect,
        plan,
        run,
        toy,
        train,
        vote,
    )

    p = argparse.ArgumentParser(prog="s2jax", description="System 2 distillation in JAX.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (inspect, generate_method, vote, train, generate, run, demo, toy, plan, convert,
                   fetch_models):
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if detect_launcher() != "single":  # multi-process: join the runtime before any JAX call
            initialize()
        return int(args.func(args) or 0)
    except S2JaxError as e:
        print(f"s2jax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"s2jax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
