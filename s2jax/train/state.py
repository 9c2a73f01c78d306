"""The train state (step, params, optimizer state), born sharded on the mesh.

Every shard placement derives from the logical axes of `param_specs`: a param's sharding from its
axes, and each optimizer-state leaf that mirrors a param (Adam's moments) from that param's.
`jax.eval_shape` gives the state's structure without computing anything; `jax.jit` with
`out_shardings` then creates each leaf directly on its devices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Int

from s2jax.models.config import ModelConfig
from s2jax.models.lora import adapter_specs
from s2jax.models.params import ParamSpec, param_specs
from s2jax.parallel.sharding import named_sharding
from s2jax.train.config import LoraConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """What a checkpoint holds besides the data-iterator state; `params` are the trainable ones
    (with LoRA, the adapters: the frozen base is never saved and has no optimizer state)."""

    step: Int[Array, ""]
    params: dict[str, Array]
    opt_state: optax.OptState


def trainable_specs(cfg: ModelConfig, lora: LoraConfig | None) -> dict[str, ParamSpec]:
    """What the optimizer updates: every weight, or with LoRA the adapters only."""
    return adapter_specs(cfg, lora) if lora and lora.enabled else param_specs(cfg)


def state_shardings(abstract: TrainState, specs: dict[str, ParamSpec], mesh: Mesh
                    ) -> TrainState:
    """Shardings for every leaf of `abstract` (a `jax.eval_shape` of the state of `specs`)."""
    by_param = {name: named_sharding(mesh, s.axes, s.shape) for name, s in specs.items()}
    shapes = {name: spec.shape for name, spec in specs.items()}
    replicated = NamedSharding(mesh, PartitionSpec())

    def leaf(path, x):
        # An optimizer leaf under a param's name with the param's shape is a per-param moment.
        for key in path:
            name = getattr(key, "key", None)
            if name in by_param and tuple(x.shape) == shapes[name]:
                return by_param[name]
        return replicated

    return TrainState(step=replicated, params=by_param,
                      opt_state=jax.tree_util.tree_map_with_path(leaf, abstract.opt_state))


def plan_state(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
               param_dtype=jnp.float32, lora: LoraConfig | None = None
               ) -> tuple[Callable[[dict], TrainState], TrainState]:
    """How to make a train state on `mesh` (of `trainable_specs`), before making one.

    Returns:
      (init, target): `init(params, donate=False)` builds a fresh state (params cast to
      `param_dtype`) with every leaf created on its shard; with `donate` the state takes over
      `params`' buffers (deleted from the caller: a full fine-tune holds one copy of the model,
      not two); `target` is the state's shape as `jax.ShapeDtypeStruct`s carrying their
      shardings, the restore target of a checkpoint.
    """
    specs = trainable_specs(cfg, lora)
    p_shardings = {name: named_sharding(mesh, s.axes, s.shape) for name, s in specs.items()}

    def init(params):
        params = {k: v.astype(param_dtype) for k, v in params.items()}
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))

    abstract_params = {name: jax.ShapeDtypeStruct(spec.shape, param_dtype)
                       for name, spec in specs.items()}
    abstract = jax.eval_shape(init, abstract_params)
    shardings = state_shardings(abstract, specs, mesh)
    jitted = {donate: jax.jit(init, in_shardings=(p_shardings,), out_shardings=shardings,
                              donate_argnums=(0,) if donate else ())
              for donate in (False, True)}

    def make(params, donate: bool = False):
        # device_put is a no-op when already on the mesh: donating then frees the caller's copy
        return jitted[donate](jax.device_put(params, p_shardings))

    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract, shardings)
    return make, target
