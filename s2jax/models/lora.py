"""LoRA adapters: y = x @ W + scale * (x @ A) @ B, with W frozen and scale = alpha / rank.

An adapter is described from the weight it adapts (`param_specs`): A takes W's input axes and a
rank axis, B a rank axis and W's output axes, so both shard by W's logical axes (the rank axis
is replicated), and W's HF key gives PEFT's key of each,
`base_model.model.<W's key without .weight>.lora_{A,B}.weight`. The HF import/export code of
`s2jax.models.hf` then reads and writes adapters as it does weights.

Adapters ride in the flat weight dict that `forward` takes, next to the base weights:
`layers.q.lora_a`, `layers.q.lora_b`, ..., and the scalar `lora_scale`; every family's block
applies them in `projection.project`. So training, sampling and the planner run the one forward,
and nothing is merged per step; `merge` folds scale * A @ B into W once, for export.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array

from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_json_object
from s2jax.core.ownership import ADAPTER, check_dir, replace_dir
from s2jax.models.config import ModelConfig
from s2jax.models.hf import hf_tensors, read_weights
from s2jax.models.lora_config import ALL_LINEAR, LORA_TARGETS, LoraConfig
from s2jax.models.params import (
    ParamSpec,
    init_value,
    input_axes,
    out_in_layout,
    param_shardings,
    param_specs,
)
from s2jax.models.projection import LORA_A, LORA_B, LORA_SCALE, OUT_IN
from s2jax.models.safetensors_io import Checkpoint, write_safetensors
from s2jax.parallel.distributed import is_writer
from s2jax.parallel.sharding import mesh_of, named_sharding

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


def _adapter_spec(w: ParamSpec, which: str, rank: int) -> ParamSpec:
    """The spec of A (`which` = LORA_A) or B of weight `w` at `rank`, derived from `w`'s."""
    k = input_axes(w)
    L, ins, outs = w.shape[0], w.shape[1:1 + k], w.shape[1 + k:]
    key = _PEFT_PREFIX + w.hf_key.removesuffix(".weight")
    if which == LORA_A:  # PEFT's lora_A.weight is [rank, in]
        return ParamSpec((L, *ins, rank), ("layers", *w.axes[1:1 + k], None), "normal",
                         key + ".lora_A.weight", (rank, w.hf_shape[1]), (rank, *ins),
                         (*range(1, k + 1), 0))
    m = len(outs)  # PEFT's lora_B.weight is [out, rank]
    return ParamSpec((L, rank, *outs), ("layers", None, *w.axes[1 + k:]), "zeros",
                     key + ".lora_B.weight", (w.hf_shape[0], rank), (*outs, rank),
                     (m, *range(m)))


def adapter_specs(cfg: ModelConfig, lora: LoraConfig) -> dict[str, ParamSpec]:
    """The description of every adapter weight of `lora` on `cfg`, keyed by its name."""
    base = param_specs(cfg)
    return {f"layers.{t}{which}": _adapter_spec(base[f"layers.{t}"], which, lora.rank)
            for t in lora.targets for which in (LORA_A, LORA_B)}


def init_adapters(cfg: ModelConfig, lora: LoraConfig, key: jax.Array, dtype=jnp.float32
                  ) -> dict[str, Array]:
    """Fresh adapters: A random (the init of `param_specs`' weights), B zero."""
    specs = adapter_specs(cfg, lora)
    keys = jax.random.split(key, len(specs))
    return {name: init_value(spec, k, dtype)
            for (name, spec), k in zip(specs.items(), keys, strict=True)}


def is_adapter(name: str) -> bool:
    return name.endswith((LORA_A, LORA_B)) or name == LORA_SCALE


def with_scale(lora: LoraConfig, adapters: Mapping[str, Array]) -> dict[str, Array]:
    """`adapters` plus their scale: what to add to the base weights to get the adapted model."""
    return {**adapters, LORA_SCALE: jnp.float32(lora.scale)}


def weight_shardings(cfg: ModelConfig, mesh: Mesh, weights: Mapping[str, Array]
                     ) -> dict[str, NamedSharding]:
    """The sharding of each of `weights` (base weights, adapters of any rank, the scale)."""
    base = param_shardings(cfg, mesh)
    specs = param_specs(cfg)
    out = {}
    for name, x in weights.items():
        if name == LORA_SCALE:
            out[name] = NamedSharding(mesh, PartitionSpec())
        elif name.endswith((LORA_A, LORA_B)):
            target, which = name[:-len(LORA_A)], name[-len(LORA_A):]
            rank = x.shape[-1] if which == LORA_A else x.shape[1]
            spec = _adapter_spec(specs[target], which, rank)
            out[name] = named_sharding(mesh, spec.axes, spec.shape)
        elif name.endswith(OUT_IN):  # a projection's transpose (`out_in_weights`)
            out[name] = named_sharding(mesh, *out_in_layout(specs[name[:-len(OUT_IN)]]))
        else:
            out[name] = base[name]
    return out


def adapted_names(weights: Mapping[str, Array]) -> list[str]:
    return [k[:-len(LORA_A)] for k in weights if k.endswith(LORA_A)]


@jax.jit
def merge(weights: dict[str, Array]) -> dict[str, Array]:
    """The base weights with every adapter folded in, W + scale * A @ B, each in W's dtype."""
    out = {k: v for k, v in weights.items() if not is_adapter(k)}
    for name in adapted_names(weights):
        a = weights[name + LORA_A].astype(jnp.float32)
        b = weights[name + LORA_B].astype(jnp.float32)
        delta = jax.vmap(lambda a, b: jnp.tensordot(a, b, axes=1))(a, b)  # per layer
        w = weights[name]
        out[name] = (w.astype(jnp.float32) + weights[LORA_SCALE] * delta).astype(w.dtype)
    return out


def _peft_module(cfg: ModelConfig, target: str) -> str:
    """PEFT's module name of a target ("q" -> "q_proj"): the last part of W's HF key."""
    return param_specs(cfg)[f"layers.{target}"].hf_key.split(".")[-2]


def save_peft(cfg: ModelConfig, lora: LoraConfig, adapters: Mapping[str, Array],
              path: str | Path, *, base_model: str | None = None) -> None:
    """Writes the adapters as a PEFT LoRA adapter dir (adapter_config.json + safetensors).

    `peft.PeftModel.from_pretrained(transformers_model, path)` loads it onto the base model.
    In a multi-process run every process must call this; only process 0 writes.
    """
    if is_writer():
        check_dir(path, "adapter dir", ADAPTER, whole=True)
    specs = adapter_specs(cfg, lora)
    layout, produce = hf_tensors(specs, dict(adapters), cfg.num_layers)
    if not is_writer():  # take part in the collective gathers, write nothing
        for key in layout:
            produce(key)
        return
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank,
        "lora_alpha": lora.alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": [_peft_module(cfg, t) for t in lora.targets],
        "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
        "base_model_name_or_path": base_model, "rank_pattern": {}, "alpha_pattern": {},
    }
    need = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in layout.values())
    with replace_dir(path, ADAPTER, what="adapter dir", need=need) as tmp:
        write_safetensors(tmp / PEFT_WEIGHTS, layout, produce)
        write_json(tmp / PEFT_CONFIG, config)


# adapter_config.json fields that would change the math, with the only value s2jax implements
_PEFT_DEFAULTS = {"use_rslora": False, "use_dora": False, "fan_in_fan_out": False,
                  "bias": "none", "rank_pattern": {}, "alpha_pattern": {},
                  "layers_to_transform": None, "modules_to_save": None}


def read_peft_config(cfg: ModelConfig, path: str | Path) -> LoraConfig:
    """The `LoraConfig` of a PEFT adapter dir, or an error naming the field s2jax cannot use."""
    file = Path(path) / PEFT_CONFIG
    peft = read_json_object(file, "the config of a PEFT LoRA adapter directory")
    if peft.get("peft_type") != "LORA":
        raise S2JaxError(f"{file}: peft_type {peft.get('peft_type')!r}, expected 'LORA'")
    for field, default in _PEFT_DEFAULTS.items():
        if peft.get(field, default) not in (default, None, [], {}):
            raise S2JaxError(f"{file}: field {field!r} = {peft[field]!r} is not implemented "
                             f"by s2jax (expected {default!r})")
    modules = {_peft_module(cfg, t): t for t in LORA_TARGETS}
    names = peft.get("target_modules")
    if names == ALL_LINEAR:
        names = list(modules)
    if not isinstance(names, list) or any(n not in modules for n in names):
        raise S2JaxError(f"{file}: target_modules {names!r}: expected a list of "
                         f"{', '.join(modules)} (or {ALL_LINEAR!r})")
    if not isinstance(peft.get("r"), int) or peft["r"] < 1:
        raise S2JaxError(f"{file}: r = {peft.get('r')!r}, expected an integer >= 1")
    targets = tuple(t for t in LORA_TARGETS if _peft_module(cfg, t) in names)
    return LoraConfig(rank=peft["r"], alpha=float(peft.get("lora_alpha", 8)), targets=targets)


def load_peft(cfg: ModelConfig, path: str | Path, *, mesh: Mesh | None = None,
              dtype=jnp.float32) -> tuple[LoraConfig, dict[str, Array]]:
    """Reads a PEFT LoRA adapter dir written for the model `cfg` describes.

    Args:
      cfg: the base model's config (the adapter's shapes are checked against it).
      path: directory with adapter_config.json and adapter_model.safetensors.
      mesh: where to place the adapters (sharded like the weights they adapt); None: one device.
      dtype: the adapters' dtype.

    Returns:
      (its LoraConfig, its weights with their scale): add them to the base weights,
      `{**model.params(), **adapters}`, for the adapted model's `forward` or `Sampler`.
    """
    lora = read_peft_config(cfg, path)
    mesh = mesh_of(mesh=mesh)
    specs = adapter_specs(cfg, lora)
    shardings = {n: named_sharding(mesh, s.axes, s.shape) for n, s in specs.items()}
    adapters = read_weights(Checkpoint(path), specs, shardings, cfg.num_layers, np.dtype(dtype),
                            source=str(path),
                            what=f"a rank-{lora.rank} LoRA of {','.join(lora.targets)}")
    return lora, with_scale(lora, adapters)


def num_adapter_params(cfg: ModelConfig, lora: LoraConfig) -> int:
    return sum(math.prod(s.shape) for s in adapter_specs(cfg, lora).values())

