"""Hugging Face checkpoint import (straight onto shards) and export.

Import reads each tensor lazily from memory-mapped safetensors and hands
`jax.make_array_from_callback` only the slice each local device holds, so no host ever holds a
whole stacked weight of a large model: at most one device shard plus one layer's slice of it.
Every checkpoint key must be used exactly once and every shape must match.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax.sharding import Mesh

from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_json_object
from s2jax.core.ownership import MODEL, check_dir, check_input_dir, replace_dir
from s2jax.models.config import ModelConfig
from s2jax.models.params import ParamSpec, num_params, param_shardings, param_specs
from s2jax.models.safetensors_io import (
    INDEX_NAME,
    Checkpoint,
    plan_shards,
    shard_file_names,
    write_safetensors,
)
from s2jax.models.weights import Weights
from s2jax.parallel.distributed import is_writer
from s2jax.parallel.memory import check_fits_devices
from s2jax.parallel.sharding import mesh_of

if TYPE_CHECKING:
    from s2jax.models.module import Transformer

# Tensors some checkpoints carry that hold no weights (recomputed buffers).
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30


def resolve_dtype(dtype, hf_config: dict | None = None):
    """`dtype` as a numpy dtype; None means the checkpoint's own `torch_dtype` (fp32 if absent)."""
    if dtype is None:
        name = (hf_config or {}).get("torch_dtype") or (hf_config or {}).get("dtype") or "float32"
        dtype = _DTYPES.get(name, jnp.float32)
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise S2JaxError(f"dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
        dtype = _DTYPES[dtype]
    return np.dtype(dtype)


def _hf_keys(spec: ParamSpec, num_layers: int) -> list[str]:
    return [spec.hf_key.format(i=i) for i in range(num_layers)] if spec.stacked else [spec.hf_key]


def _read_slice(ckpt: TensorSource, spec: ParamSpec, keys: list[str], index: tuple, dtype
                ) -> np.ndarray:
    """Our layout's `index` slice of the weight, copying only that slice off the memory map."""

    def one(key, idx):
        view = ckpt.view(key).reshape(spec.hf_view).transpose(spec.hf_perm)
        return view[idx]

    if not spec.stacked:
        return np.array(one(keys[0], index), dtype=dtype, copy=True)
    layers = range(len(keys))[index[0]]
    first = one(keys[layers[0]], index[1:])
    out = np.empty((len(layers), *first.shape), dtype)
    for j, i in enumerate(layers):
        out[j] = one(keys[i], index[1:])
    return out


class TensorSource(Protocol):
    """Where `place_weights` reads tensors: HF keys -> arrays in HF layout (safetensors, GGUF)."""

    def keys(self) -> list[str]: ...
    def shape(self, key: str) -> tuple[int, ...]: ...
    def view(self, key: str) -> np.ndarray: ...
    def where(self, key: str) -> str: ...


def read_weights(ckpt: TensorSource, specs: dict[str, ParamSpec], shardings: dict,
                 num_layers: int, dtype, *, source: str, what: str,
                 may_skip: tuple[str, ...] = ()) -> dict[str, jax.Array]:
    """Every weight of `specs` from `ckpt`, each device reading only its shard.

    Each key of `specs` must be in the checkpoint with its shape, and every checkpoint tensor
    must be used (except `may_skip`, e.g. a tied checkpoint's duplicate LM head); `source`
    names the checkpoint and `what` the model in errors.
    """
    available = set(ckpt.keys())
    used: set[str] = set(may_skip)
    out = {}
    for name, spec in specs.items():
        keys = _hf_keys(spec, num_layers)
        for key in keys:
            if key not in available:
                raise S2JaxError(
                    f"{source}: checkpoint has no tensor {key} (expected {list(spec.hf_shape)})")
            if ckpt.shape(key) != spec.hf_shape:
                raise S2JaxError(
                    f"{ckpt.where(key)} has shape {list(ckpt.shape(key))}, "
                    f"expected {list(spec.hf_shape)}")
            used.add(key)
        out[name] = jax.make_array_from_callback(
            spec.shape, shardings[name],
            lambda idx, spec=spec, keys=keys: _read_slice(ckpt, spec, keys, idx, dtype))
    unused = sorted(k for k in available - used if not k.endswith(_IGNORED_SUFFIXES))
    if unused:
        more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
        raise S2JaxError(f"{source}: checkpoint tensors not used by {what}: "
                         f"{', '.join(unused[:3])}{more}")
    return out


def read_checkpoint(path: str | Path, *, dtype=None, mesh: Mesh | None = None) -> Weights:
    """Reads an HF checkpoint directory's weights onto `mesh`, with its config.

    Args:
      path: directory with config.json and model.safetensors (or an index and its shards).
      dtype: weight dtype (name or dtype); None keeps the checkpoint's `torch_dtype`.
      mesh: a (data, fsdp, tensor) mesh; None places everything on the first device.

    Returns:
      The weights, with `generation_config` holding generation_config.json (or {}).
    """
    path = check_input_dir(path, "an HF checkpoint directory")
    if not path.is_dir():
        raise S2JaxError(f"{path}: not a directory (expected an HF checkpoint directory)")
    hf_config = read_json_object(path / "config.json", "an HF config.json")
    cfg = ModelConfig.from_hf(hf_config, source=str(path / "config.json"))
    ckpt = Checkpoint(path)
    for key in ckpt.location:
        stored = ckpt.dtype(key)
        if not key.endswith(_IGNORED_SUFFIXES) and not (
                np.issubdtype(stored, np.floating) or stored == np.dtype(ml_dtypes.bfloat16)):
            raise S2JaxError(  # a weight is never cast from an integer type
                f"{ckpt.where(key)} is stored as {stored}, expected a floating-point dtype "
                "(F32, F16, BF16)")
    weights = place_weights(cfg, ckpt, dtype=resolve_dtype(dtype, hf_config), mesh=mesh,
                            source=str(path))
    gen = path / "generation_config.json"
    if gen.is_file():
        weights.generation_config = read_json_object(gen, "the checkpoint's generation config")
    return weights


def place_weights(cfg: ModelConfig, ckpt: TensorSource, *, dtype, mesh: Mesh | None,
                  source: str) -> Weights:
    """The weights of `cfg` read from `ckpt` straight onto `mesh`'s shards.

    Every tensor of `ckpt` must be used exactly once and every shape must match `param_specs`;
    `source` names the checkpoint in errors.
    """
    mesh = mesh_of(mesh=mesh)
    count = num_params(cfg)
    check_fits_devices(count * np.dtype(dtype).itemsize, mesh.devices.flat,
                       f"{source}: its {count:,} weights in {np.dtype(dtype).name}",
                       "load it in bfloat16 (--dtype), on more devices (--mesh), or on a "
                       "bigger machine")
    # some tied checkpoints store the shared matrix twice, as the LM head too
    extra = ("lm_head.weight",) if cfg.tie_word_embeddings else ()
    specs = param_specs(cfg)
    arrays = read_weights(ckpt, specs, param_shardings(cfg, mesh), cfg.num_layers, dtype,
                          source=source, what=cfg.architecture, may_skip=extra)
    check_finite(arrays, specs, cfg.num_layers, source)
    return Weights(cfg, arrays)


@functools.partial(jax.jit, static_argnums=1)
def _finite(arrays: dict[str, jax.Array], stacked: tuple[str, ...]) -> dict[str, jax.Array]:
    """Per weight, whether it is finite: per layer for stacked weights, else one flag."""
    return {k: jnp.isfinite(v).all(axis=tuple(range(1, v.ndim))) if k in stacked
            else jnp.isfinite(v).all() for k, v in arrays.items()}


def check_finite(arrays: dict[str, jax.Array], specs: dict[str, ParamSpec], num_layers: int,
                 source: str) -> None:
    """Refuses weights holding NaN or Inf: such a model only ever generates garbage."""
    stacked = tuple(sorted(k for k, spec in specs.items() if spec.stacked))
    for name, ok in jax.device_get(_finite(arrays, stacked)).items():
        ok = np.atleast_1d(ok)
        if not ok.all():
            key = _hf_keys(specs[name], num_layers)[int(np.argmin(ok))]
            raise S2JaxError(f"{source}: tensor {key} holds NaN or Inf values (expected finite "
                             "weights; the checkpoint is damaged or diverged)")


def _to_host(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils  # only multi-host runs get here

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def hf_tensors(specs: dict[str, ParamSpec], weights: dict[str, jax.Array], num_layers: int
               ) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]], Callable[[str], np.ndarray]]:
    """The HF tensors of `weights`: ({key: (shape, dtype)}, produce(key) -> the tensor).

    `produce` gathers one layer of one weight at a time (collectively in a multi-process run:
    every process must produce every key, in the same order).
    """
    layout: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    source: dict[str, tuple[str, int | None]] = {}
    for name, spec in specs.items():
        for i, key in enumerate(_hf_keys(spec, num_layers)):
            layout[key] = (spec.hf_shape, np.dtype(weights[name].dtype))
            source[key] = (name, i if spec.stacked else None)

    def produce(key: str) -> np.ndarray:
        name, layer = source[key]
        value = weights[name]
        ours = _to_host(value if layer is None else value[layer])
        spec = specs[name]
        return ours.transpose(np.argsort(spec.hf_perm)).reshape(spec.hf_shape)

    return layout, produce


def save_model(model: Transformer, tokenizer, path: str | Path, *,
               max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Writes `model` (and `tokenizer`) as an HF checkpoint directory, atomically.

    `path` must be fresh or a model directory s2jax wrote and nobody changed since
    (`s2jax.core.ownership`); anything else is refused before the weights are gathered.
    Weights go to model.safetensors, or to numbered shards with an index when they exceed
    `max_shard_bytes`. In a multi-process run every process must call this (weights are
    gathered collectively); only process 0 writes.
    """
    cfg = model.config
    writer = is_writer()
    if writer:
        check_dir(path, "model dir", MODEL, whole=True)
    layout, produce = hf_tensors(param_specs(cfg), model.params(), cfg.num_layers)
    sizes = {k: int(np.prod(s)) * d.itemsize for k, (s, d) in layout.items()}
    shards = plan_shards(sizes, max_shard_bytes)
    if not writer:  # take part in the collective gathers, write nothing
        for key in layout:
            produce(key)
        return
    with replace_dir(path, MODEL, what="model dir", need=sum(sizes.values())) as tmp:
        weight_map = {}
        for fname, keys in zip(shard_file_names(len(shards)), shards, strict=True):
            write_safetensors(tmp / fname, {k: layout[k] for k in keys}, produce)
            weight_map.update(dict.fromkeys(keys, fname))
        if len(shards) > 1:
            write_json(tmp / INDEX_NAME, {"metadata": {"total_size": sum(sizes.values())},
                                          "weight_map": weight_map})
        hf = cfg.to_hf()
        hf["torch_dtype"] = {np.dtype(v): k for k, v in _DTYPES.items()}.get(
            np.dtype(model.param("embed").get_value().dtype), "float32")
        write_json(tmp / "config.json", hf)
        gen = dict(getattr(model, "generation_config", None) or {})
        gen.setdefault("bos_token_id", cfg.bos_token_id)
        eos = list(cfg.eos_token_ids)
        gen.setdefault("eos_token_id", eos[0] if len(eos) == 1 else eos)
        write_json(tmp / "generation_config.json", gen)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))

