"""Which JAX platforms a command starts: the CPU alone on a machine with no accelerator attached.

With the `tpu` extra installed (libtpu, for `s2jax plan --target`), JAX also starts its TPU
plugin on a CPU-only machine; libtpu then looks for TPU workers and a metadata server, finds
none, and prints several lines of errors at the first compile of every command. A machine with
no TPU, NVIDIA or AMD device node has nothing but the CPU to offer, so the commands say so
(`JAX_PLATFORMS=cpu`) before JAX starts. A platform the user names is never overridden.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

# device nodes of accelerators JAX has plugins for: TPU (v4/v5e: accel*, v5p/v6e: vfio groups),
# NVIDIA GPUs, AMD GPUs (ROCm's kernel driver)
ACCELERATOR_NODES = ("accel*", "vfio/[0-9]*", "nvidia[0-9]*", "kfd")


def accelerator_attached(dev: Path = Path("/dev")) -> bool:
    """Whether any accelerator's device node is present under `dev`."""
    return any(next(dev.glob(pattern), None) is not None for pattern in ACCELERATOR_NODES)


def default_to_cpu(env: MutableMapping[str, str] = os.environ, dev: Path = Path("/dev")) -> bool:
    """Sets JAX_PLATFORMS=cpu where no accelerator is attached, JAX is not yet imported and no
    platform is named; returns whether it did."""
    if "JAX_PLATFORMS" in env or "jax" in sys.modules or accelerator_attached(dev):
        return False
    env["JAX_PLATFORMS"] = "cpu"
    return True
