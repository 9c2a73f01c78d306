"""The `s2jax` console script: a thin dispatcher; each subcommand lives in `s2jax.commands`."""

from __future__ import annotations

import argparse
import atexit
import errno
import gc
import sys

from s2jax import __version__
from s2jax.core import compile_cache, host_memory
from s2jax.core.errors import S2JaxError
from s2jax.parallel.distributed import detect_launcher, initialize

# errors of the machine rather than of s2jax: reported in one line, exit 2
_ENVIRONMENT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other bad input (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
        report,
        run,
        sweep,
        toy,
        train,
        vote,
    )

    p = _Parser(prog="s2jax", description="System 2 distillation in JAX.")
    p.add_argument("--version", action="version", version=f"s2jax {__version__}")
    p.add_argument("--compilation-cache", default=None, metavar="DIR|off",
                   help="JAX's persistent compilation cache (default: $S2JAX_COMPILATION_CACHE, "
                   "else the s2jax user cache dir; see s2jax/core/compile_cache.py)")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (inspect, generate_method, vote, train, generate, run, sweep, report, demo, toy,
                   plan, convert, fetch_models):
        module.register(sub)
    return p


def _environment_error(e: BaseException | None) -> OSError | None:
    """The OSError of the machine (disk full, read-only, ...) that caused `e`, if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRORS:
            return e
        e = e.__cause__ or e.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    # At exit, the interpreter's cycle collections walk (and free) every object of JAX,
    # transformers and the run: 0.4-0.8 s of every command that imported JAX, for memory the OS
    # takes back anyway. Objects frozen at exit are skipped and left to the OS. This handler
    # runs after JAX's own (registered later, run earlier), and only at exit.
    atexit.unregister(gc.freeze)  # once, however often main runs in a process
    atexit.register(gc.freeze)
    args = _parser().parse_args(argv)
    compile_cache.enable(args.compilation_cache)  # before anything compiles
    try:
        if host_memory.error:  # found at `import s2jax`, which could not exit with one line
            raise S2JaxError(host_memory.error)
        if detect_launcher() != "single":  # multi-process: join the runtime before any JAX call
            initialize()
        return int(args.func(args) or 0)
    except S2JaxError as e:
        print(f"s2jax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        cause = _environment_error(e)
        if cause is None:
            raise
        # a full disk or a read-only path: one line, whatever library was writing (orbax wraps
        # the OSError of its writer threads)
        where = f"{cause.filename}: " if cause.filename else ""
        print(f"s2jax {args.command}: error: {where}{cause.strerror or cause} (errno "
              f"{errno.errorcode.get(cause.errno, cause.errno)}); free space or pick another "
              "path", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"s2jax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
