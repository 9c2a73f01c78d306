"""The `s2jax` console script: a thin dispatcher; each subcommand lives in `s2jax.commands`."""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import sys
import traceback

from s2jax import __version__
from s2jax.core import compile_cache, host_memory
from s2jax.core.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    S2JaxError,
    machine_error,
    out_of_memory,
)
from s2jax.parallel.distributed import detect_launcher, initialize
from s2jax.parallel.platforms import default_to_cpu

EPILOG = """exit status:
  0    done
  1    internal error: a bug in s2jax (printed with a traceback; please report it)
  2    usage error or bad input (a flag, config, input file or output path was refused;
       nothing was written)
  3    the run failed (diverged training, disk full, out of memory); what finished is kept
       and rerunning the command resumes it
  4    a non-result: the run finished but produced nothing meaningful (the filter kept no
       examples, no answer tokens to train on, the toy model's capability check failed,
       `s2jax plan` found that the run or sampling does not fit)
  130  interrupted
Every error is one line on stderr naming the file, flag or field and what was expected.
s2jax writes only into paths it created and marked as its own, or new ones: an existing
file or directory that is not s2jax's output is refused, never replaced or emptied."""


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

    p = _Parser(prog="s2jax", description="System 2 distillation in JAX.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"s2jax {__version__}")
    p.add_argument("--compilation-cache", default=None, metavar="DIR|off",
                   help="JAX's persistent compilation cache (default: $S2JAX_COMPILATION_CACHE, "
                   "else the s2jax user cache dir; see s2jax/core/compile_cache.py)")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (inspect, generate_method, vote, train, generate, run, sweep, report, demo, toy,
                   plan, convert, fetch_models):
        module.register(sub)
    return p


class _OrbaxBackgroundErrors(logging.Filter):
    """Drops orbax's logs of its background threads' errors: the command reports the error
    itself, in one line, when the save it belongs to is waited for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and "orbax" in record.pathname)


def _quiet_unraisable(hook):
    def quiet(unraisable):
        # orbax closes its event loop while tensorstore callbacks of a failed save still run
        if "Event loop is closed" not in str(unraisable.exc_value):
            hook(unraisable)
    return quiet


def _quiet_library_noise() -> None:
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _OrbaxBackgroundErrors) for f in logger.filters):
        logger.addFilter(_OrbaxBackgroundErrors())
    if not getattr(sys.unraisablehook, "s2jax", False):
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
        sys.unraisablehook.s2jax = True


def main(argv: list[str] | None = None) -> int:
    # At exit, the interpreter's cycle collections walk (and free) every object of JAX,
    # transformers and the run: 0.4-0.8 s of every command that imported JAX, for memory the OS
    # takes back anyway. Objects frozen at exit are skipped and left to the OS. This handler
    # runs after JAX's own (registered later, run earlier), and only at exit.
    atexit.unregister(gc.freeze)  # once, however often main runs in a process
    atexit.register(gc.freeze)
    args = _parser().parse_args(argv)
    default_to_cpu()  # before JAX starts: no TPU plugin's start-up errors on a CPU-only machine
    compile_cache.enable(args.compilation_cache)  # before anything compiles
    _quiet_library_noise()
    try:
        if host_memory.error:  # found at `import s2jax`, which could not exit with one line
            raise S2JaxError(host_memory.error)
        # multi-process: join the runtime before any JAX call
        if getattr(args, "distributed", True) and detect_launcher() != "single":
            initialize()
        return int(args.func(args) or 0)
    except S2JaxError as e:
        print(f"s2jax {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"s2jax {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        # a full disk or a read-only path, whatever library was writing (orbax reports the
        # OSError of its writer threads inside its own errors), or an allocation that failed
        machine = machine_error(e)
        if machine is not None:
            print(f"s2jax {args.command}: error: {machine}; free space (or fix the permission) "
                  "and rerun to resume", file=sys.stderr)
            return EXIT_RUN_FAILED
        memory = out_of_memory(e)
        if memory is not None:
            print(f"s2jax {args.command}: error: {memory}; lower the batch, lengths or model "
                  "size (`s2jax plan` estimates what fits)", file=sys.stderr)
            return EXIT_RUN_FAILED
        traceback.print_exc()
        print(f"s2jax {args.command}: internal error (a bug in s2jax; please report it with "
              "the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
