"""The exceptions the CLI turns into one line and an exit code that tells what kind of failure.

    0    done
    1    internal error: a bug in s2jax (the only case that prints a traceback)
    2    usage error or bad input: a flag, a config, an input file or an output path was refused,
         before any work where it can be checked then; nothing was written
    3    the run failed: diverged training, a full disk, out of memory; what finished is kept
         and a rerun resumes it
    4    a non-result: the run finished but produced nothing meaningful (a filter that kept
         nothing, no tokens to learn from, a capability check that failed)
    130  interrupted (Ctrl-C)
"""

import errno
import os
import re

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
EXIT_NON_RESULT = 4
EXIT_INTERRUPTED = 130


class S2JaxError(Exception):
    """Bad input (file, field, config value): the message names it and what was expected."""

    exit_code = EXIT_BAD_INPUT


class RunFailed(S2JaxError):
    """The run started on good input and failed (diverged, disk full): exit 3."""

    exit_code = EXIT_RUN_FAILED


class NonResult(S2JaxError):
    """The run finished but its result cannot mean anything: exit 4."""

    exit_code = EXIT_NON_RESULT


# Errors of the machine rather than of s2jax or its input: reported in one line, exit 3.
MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)
# tensorstore (under orbax) reports an OS error inside its message, not as an OSError
_OS_CODE = re.compile(r"os_error_code='?(\d+)")
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


def machine_error(e: BaseException | None) -> str | None:
    """One line for the error of the machine (disk full, quota, read-only, permission) behind
    `e` or one of its causes, whatever library raised it; None when there is none."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in MACHINE_ERRNOS:
            where = f"{e.filename}: " if e.filename else ""
            return f"{where}{e.strerror or os.strerror(e.errno)} (errno " \
                   f"{errno.errorcode[e.errno]})"
        found = _OS_CODE.search(str(e))
        if found and int(found.group(1)) in MACHINE_ERRNOS:
            code = int(found.group(1))
            paths = _QUOTED_PATH.findall(str(e))
            where = f"{paths[-1]}: " if paths else ""
            return f"{where}{os.strerror(code)} (errno {errno.errorcode[code]})"
        e = e.__cause__ or e.__context__
    return None


def out_of_memory(e: BaseException) -> str | None:
    """One line when `e` is an allocation that failed (host or device); else None."""
    if isinstance(e, MemoryError):
        return "out of host memory"
    text = str(e)
    if "RESOURCE_EXHAUSTED" in text and "memory" in text.lower():
        first = text.strip().splitlines()[0]
        return f"out of device memory ({first[:200]})"
    return None
