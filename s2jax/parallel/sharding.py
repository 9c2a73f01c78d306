"""Device meshes and the one table that maps logical axis names to mesh axes.

Model, cache and batch arrays name their axes logically (`embed`, `heads`, ...); `RULES` maps each
to a mesh axis of the 3-D mesh (`data`, `fsdp`, `tensor`). Two logical axes of one array that map
to the same mesh axis would shard one device dimension twice: that is an error, not a fallback.
A dimension that the mesh axis does not divide is replicated instead (e.g. 2 KV heads on a
4-way tensor axis), since JAX cannot place uneven shards.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from s2jax.core.errors import S2JaxError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis, tuple of mesh axes, or None (replicated)
RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "layers": None,
    "norm": None,
    "seq": None,
    "cache_seq": None,
}


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices, in order)."""
    devices = list(jax.devices() if devices is None else devices)
    want = data * fsdp * tensor
    if want != len(devices):
        raise S2JaxError(
            f"mesh data={data} x fsdp={fsdp} x tensor={tensor} = {want} devices, "
            f"but {len(devices)} are available"
        )
    return Mesh(np.asarray(devices).reshape(data, fsdp, tensor), MESH_AXES)


def mesh_of(array: jax.Array | None = None, mesh: Mesh | None = None) -> Mesh:
    """`mesh` when given, else the (data, fsdp, tensor) mesh `array` lives on, else a mesh of
    the first device: where weights go when no one said where."""
    if mesh is not None:
        return mesh
    on = getattr(getattr(array, "sharding", None), "mesh", None)
    if isinstance(on, Mesh) and tuple(on.axis_names) == MESH_AXES:
        return on
    return make_mesh(devices=jax.devices()[:1])


def mesh_from_spec(spec: str) -> Mesh | None:
    """The mesh of a 'data=2,fsdp=2,tensor=2' option or config field; None for ''."""
    return make_mesh(**parse_mesh(spec)) if spec else None


def parse_mesh(spec: str) -> dict[str, int]:
    """Parses 'data=2,fsdp=2,tensor=2' (missing axes are 1)."""
    sizes = dict.fromkeys(MESH_AXES, 1)
    for part in filter(None, spec.split(",")):
        name, _, value = part.partition("=")
        if name.strip() not in sizes or not value.strip().isdigit():
            raise S2JaxError(f"mesh {spec!r}: expected e.g. data=2,fsdp=2,tensor=2, got {part!r}")
        sizes[name.strip()] = int(value)
    return sizes


def logical_to_spec(
    axes: Sequence[str | None], shape: Sequence[int] | None = None, mesh: Mesh | None = None,
    rules: dict = RULES,
) -> PartitionSpec:
    """PartitionSpec for an array whose dimensions are named `axes`.

    With `shape` and `mesh`, a dimension the mesh axes do not divide is replicated.
    """
    used: dict[str, str] = {}
    spec = []
    for i, name in enumerate(axes):
        if name is None:
            spec.append(None)
            continue
        if name not in rules:
            raise S2JaxError(f"logical axis {name!r} has no sharding rule (known: {list(rules)})")
        target = rules[name]
        mesh_axes = () if target is None else (target,) if isinstance(target, str) else target
        if mesh is not None:
            mesh_axes = tuple(a for a in mesh_axes if mesh.shape[a] > 1)
            size = int(np.prod([mesh.shape[a] for a in mesh_axes]))
            if shape is not None and shape[i] % size:
                mesh_axes = ()
        for a in mesh_axes:
            if a in used:
                raise S2JaxError(
                    f"sharding collision in axes {tuple(axes)}: {used[a]!r} and {name!r} "
                    f"both map to mesh axis {a!r}"
                )
            used[a] = name
        spec.append(None if not mesh_axes else mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, axes: Sequence[str | None], shape: Sequence[int]) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh))
