"""TPU slices to compile for without a TPU: the real TPU compiler on a CPU-only machine.

`s2jax plan --target v5p-64` lowers and compiles its programs for the devices of a TPU
topology that exists only as a description (JAX's ahead-of-time topology API,
`jax.experimental.topologies.get_topology_desc`, the way MaxText's train_compile does); the
compiler is the one in the `libtpu` wheel (`pip install -e ".[tpu]"`). Nothing runs, so no TPU
is needed, and XLA's memory analysis of the result is what the chips would hold.

Slice names are Cloud TPU's: `v4-N` and `v5p-N` count TensorCores (two per chip, one JAX
device per chip: megacore), `v5e-N` (also `v5litepod-N`) and `v6e-N` count chips.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import itertools
import math
import os
import re

from s2jax.core.errors import S2JaxError

# generation: (topology prefix, TensorCores per chip in the slice name, HBM GiB per chip, 3-D)
GENERATIONS = {
    "v4": ("v4", 2, 32, True),
    "v5p": ("v5p", 2, 95, True),
    "v5e": ("v5e", 1, 16, False),
    "v5litepod": ("v5e", 1, 16, False),
    "v6e": ("v6e", 1, 32, False),
}


@dataclasses.dataclass(frozen=True)
class TpuTarget:
    """One TPU slice: its name, chips, topology string and memory per chip."""

    name: str  # e.g. "v5p-64"
    chips: int  # JAX devices
    topology: str  # e.g. "v5p:2x4x4"
    hbm_gib: int  # per chip

    @property
    def generation(self) -> str:
        return self.topology.split(":")[0]


def _shape(chips: int, three_d: bool) -> tuple[int, ...] | None:
    """Cloud TPU's slice shape for `chips` chips: 3-D slices are 2x2x1, then grow from 2x2x2 by
    doubling z, y, x in turn (v5p-64 = 32 chips = 2x4x4); 2-D ones from 2x2 by doubling y, x
    (v5e-8 = 2x4, v5e-64 = 8x8)."""
    if three_d:
        if chips == 4:
            return (2, 2, 1)
        dims, order = [2, 2, 2], (2, 1, 0)
    else:
        if chips == 1:
            return (1, 1)
        dims, order = [2, 2], (1, 0)
    i = 0
    while math.prod(dims) < chips:
        dims[order[i % len(order)]] *= 2
        i += 1
    return tuple(dims) if math.prod(dims) == chips else None


def parse_target(name: str) -> TpuTarget:
    """The slice `name` names (`v5p-64`, `v5e-16`, `v4-32`, `v6e-8`); an error otherwise."""
    m = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name.strip().lower())
    if not m:
        raise S2JaxError(f"--target {name!r}: expected a TPU slice such as v5p-64, v5e-16, "
                         f"v4-32 or v6e-8")
    prefix, cores_per_chip, hbm, three_d = GENERATIONS[m.group(1)]
    count = int(m.group(2))
    chips = count // cores_per_chip if count % cores_per_chip == 0 else 0
    shape = _shape(chips, three_d) if chips else None
    if shape is None:
        unit = "TensorCores (2 per chip)" if cores_per_chip == 2 else "chips"
        raise S2JaxError(f"--target {name!r}: {count} {unit} is not a slice size "
                         f"(expected {'8, 16, 32, 64, ...' if three_d else '1, 4, 8, 16, ...'})")
    return TpuTarget(f"{m.group(1)}-{count}", chips, f"{prefix}:{'x'.join(map(str, shape))}",
                     hbm)


def libtpu_missing() -> str | None:
    """Why TPU programs cannot be compiled here (None: they can)."""
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        return 'the TPU compiler is not installed: pip install -e ".[tpu]" (the libtpu wheel)'
    return None


def quiet_env() -> dict[str, str]:
    """Environment for a process that only compiles for TPUs: libtpu would otherwise look for
    TPU workers and a metadata server at start-up and print errors when there are none, and
    hold a machine-wide lock (/tmp/libtpu_lockfile) that stops a second planning process. JAX's
    persistent compilation cache is off there: a compile-only program cannot be loaded back
    from it (without a TPU client JAX warns on every cached entry)."""
    return {"TPU_ACCELERATOR_TYPE": "v5p-8", "TPU_WORKER_HOSTNAMES": "localhost",
            "TPU_SKIP_MDS_QUERY": "1", "TPU_MIN_LOG_LEVEL": "3",
            "ALLOW_MULTIPLE_LIBTPU_LOAD": "1", "JAX_ENABLE_COMPILATION_CACHE": "false"}


def target_devices(target: TpuTarget) -> list:
    """The compile-only devices of `target`'s topology (one per chip), in the order
    `mesh_utils` lays out a mesh over its torus."""
    why = libtpu_missing()
    if why:
        raise S2JaxError(f"--target {target.name}: {why}")
    # JAX is imported where a topology is built: `s2jax plan` parses targets before it starts
    from jax.experimental import topologies

    kwargs = {"chip_config_name": "megacore"} if target.generation in ("v4", "v5p") else {}
    # libtpu reads its environment when it is loaded (here, the first time); set only for that,
    # since TPU_WORKER_HOSTNAMES would make child processes think they run on a TPU pod
    before = _process_environ()
    os.environ.update({k: v for k, v in quiet_env().items() if k not in os.environ})
    try:
        devices = topologies.get_topology_desc(topology_name=target.topology, platform="tpu",
                                               **kwargs).devices
    finally:
        # libtpu also sets variables of its own (TPU_WORKER_ID, CLOUD_TPU_TASK_ID, ...) in the
        # C environment, which os.environ does not see but child processes inherit
        for k in _process_environ() - before:
            os.environ.pop(k, None)
            os.unsetenv(k)
    if len(devices) != target.chips:
        raise S2JaxError(f"--target {target.name}: topology {target.topology} has "
                         f"{len(devices)} devices, expected {target.chips}")
    return list(devices)


def _process_environ() -> set[str]:
    """The names in this process's C environment (`environ`), which libraries loaded into the
    process may change behind `os.environ`'s back."""
    names, env = set(), ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    for i in itertools.count():
        if env[i] is None:
            return names
        names.add(env[i].split(b"=", 1)[0].decode(errors="replace"))


def target_mesh(target: TpuTarget, sizes: dict[str, int]):
    """A (data, fsdp, tensor) mesh over `target`'s chips, laid out on the torus by JAX's
    `mesh_utils` (tensor on the innermost, best-connected axis), as a real slice's would be."""
    # JAX (and sharding, which imports it) only where a mesh is built, as in `target_devices`
    from jax.experimental import mesh_utils
    from jax.sharding import Mesh

    from s2jax.parallel.sharding import MESH_AXES

    shape = tuple(sizes.get(a, 1) for a in MESH_AXES)
    if math.prod(shape) != target.chips:
        raise S2JaxError(f"--mesh {sizes} needs {math.prod(shape)} devices but {target.name} "
                         f"has {target.chips} chips")
    return Mesh(mesh_utils.create_device_mesh(shape, target_devices(target)), MESH_AXES)
