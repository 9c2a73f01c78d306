"""Host memory policy for CPU runs: optionally, glibc keeps freed memory for reuse.

XLA:CPU gives each execution of a compiled program one block for all its temporaries, allocated
when the call starts and freed when it ends (420 MiB for the 5M SFT step of `bench/train.py`,
~3.5 GiB at SmolLM2's shapes). glibc serves a block that large with a fresh `mmap` and unmaps it
on free, so every call faults in, and the kernel zeroes, every page of it again. On the 2-core
VM of this project's measurements that was ~900k page faults and 5-6 s of system time per
SmolLM2-shape SFT step, against ~12 s of arithmetic.

`S2JAX_HOST_MALLOC=keep` (read when `s2jax` is imported) asks glibc, through `mallopt(3)`, to
serve every thread from its main heap (`M_ARENA_MAX` 1: other arenas cannot hold blocks over
64 MiB), never to use `mmap` for large blocks (`M_MMAP_MAX` 0) and never to give the top of the
heap back (`M_TRIM_THRESHOLD` -1). Freed blocks are then reused by the next call, without page
faults. The cost is memory: the process keeps its peak heap until it exits, and one heap
fragments. Small blocks carve into the hole a large one left, so the next large block extends
the heap. Measured: resident memory grew by about two temporary blocks over the first steps,
then held (5M SFT: 1.00 -> 1.77 GiB, flat from step 2 to 200; SmolLM2 shapes: 5.9 -> 12.2 GiB).
That is why it is not the default (`system`: glibc's own behaviour): a run near the machine's
memory limit would not fit.

Under `system`, `release()` gives the heap's free memory back before a phase that allocates
from other threads (a checkpoint's writers, the export): freed blocks of a step's temporaries
stay in the main heap (4.2 GB after a Qwen2.5-0.5B full fine-tune step), which those threads'
arenas cannot reuse, so the phase's buffers came on top of them.

`M_ARENA_MAX` is fixed by glibc when a second thread first allocates, so the setting takes full
effect only when `s2jax` is imported before JAX, torch or anything else starts threads (the
`s2jax` command does); a launcher can instead set `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=-1` in the environment.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "S2JAX_HOST_MALLOC"
MODES = ("system", "keep")
# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8

applied: str | None = None  # the policy in effect once `configure` ran: "keep" or "system"
error: str | None = None  # a bad $S2JAX_HOST_MALLOC, which the CLI reports (an import cannot)


def requested(environ=os.environ) -> str:
    """The policy `environ` asks for; ValueError names the variable when it is not a mode."""
    mode = environ.get(ENV, "system").strip().lower() or "system"
    if mode not in MODES:
        raise ValueError(f"${ENV}={environ[ENV]!r}: expected one of {', '.join(MODES)}")
    return mode


def configure() -> str:
    """Applies the requested policy once per process; returns the one in effect."""
    global applied, error
    if applied is None:
        applied = "system"
        try:
            mode = requested()
        except ValueError as e:
            error = str(e)
            return applied
        if mode == "keep" and sys.platform.startswith("linux"):
            try:
                mallopt = ctypes.CDLL(None).mallopt  # glibc; absent from musl
            except (OSError, AttributeError):
                return applied
            ok = [mallopt(param, value) for param, value in
                  ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))]
            applied = "keep" if all(ok) else "system"
    return applied


def release() -> None:
    """Returns the free memory of glibc's heaps to the system (`malloc_trim(3)`); a no-op under
    `keep` (which holds it for the next call on purpose) and without glibc."""
    if configure() == "keep" or not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
