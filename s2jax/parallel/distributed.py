"""Multi-process start-up on JAX's own distributed runtime, and the one-writer rule.

One program runs everywhere: on a TPU pod or under SLURM `jax.distributed.initialize()` finds the
coordinator itself; local multi-process runs (tests, `launch/multiprocess.sh`) name it through
`S2JAX_COORDINATOR`, `S2JAX_NUM_PROCESSES` and `S2JAX_PROCESS_ID`, and use gloo for CPU
collectives. A single process with none of these set runs without the runtime.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

ENV_COORDINATOR = "S2JAX_COORDINATOR"
ENV_NUM_PROCESSES = "S2JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "S2JAX_PROCESS_ID"


def detect_launcher(env: dict[str, str] | None = None) -> str:
    """'explicit', 'slurm', 'tpu' or 'single': how this process was started."""
    env = os.environ if env is None else env
    if env.get(ENV_COORDINATOR):
        return "explicit"
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    if env.get("TPU_WORKER_HOSTNAMES") or env.get("CLOUD_TPU_TASK_ID") \
            or env.get("TPU_WORKER_ID"):
        return "tpu"
    return "single"


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: Sequence[int] | None = None
               ) -> None:
    """Starts `jax.distributed` when this is a multi-process run; a no-op otherwise.

    Explicit arguments win over the environment. Call before any other JAX call.
    """
    # only multi-process runs start JAX's runtime here
    import jax

    env = os.environ
    coordinator = coordinator or env.get(ENV_COORDINATOR)
    how = "explicit" if coordinator else detect_launcher()
    if how == "single":
        return
    if how == "explicit":
        num_processes = num_processes or int(env[ENV_NUM_PROCESSES])
        process_id = process_id if process_id is not None else int(env[ENV_PROCESS_ID])
        if jax.config.jax_platforms in (None, "", "cpu") and not env.get("CUDA_VISIBLE_DEVICES"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   local_device_ids=local_device_ids)
    else:  # SLURM and TPU pods: the runtime reads the cluster's own environment
        jax.distributed.initialize()


def is_writer() -> bool:
    """True on the one process that writes artifacts and logs (process 0). A process that never
    imported JAX (a fake generator, a pure-Python stage) runs alone, and writes."""
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


def process_index() -> int:
    """This process's index (0 in a one-process run or before JAX is imported)."""
    jax = sys.modules.get("jax")
    return 0 if jax is None else jax.process_index()


def barrier() -> Callable[[str], None] | None:
    """A barrier over every process (named by its argument), or None in a one-process run."""
    jax = sys.modules.get("jax")
    if jax is None or jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils  # loaded only in multi-process runs

    return multihost_utils.sync_global_devices


def split_for_process(items: Sequence, process_index: int, process_count: int) -> range:
    """The contiguous slice of `items` this process handles (sizes differ by at most one)."""
    n = len(items)
    start = process_index * n // process_count
    return range(start, (process_index + 1) * n // process_count)
