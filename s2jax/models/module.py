"""The decoder as a Flax NNX module: `Transformer`, whose `nnx.Param` state is the weights.

Models are NNX modules (users compose them with nnx tooling: `nnx.state`, `nnx.split`,
optimizers over `nnx.Param`); the computation is the pure `forward` of `transformer.py` over
`params()`. Flax is imported here only, so sampling from a checkpoint's `Weights` (as
`s2jax generate` does) never pays for it.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Int

from s2jax.models.cache import KVCache
from s2jax.models.config import ModelConfig
from s2jax.models.params import init_value, param_specs
from s2jax.models.transformer import Remat, forward
from s2jax.models.weights import Weights


class _Layers(nnx.Module):
    """Holds the stacked per-layer weights."""


class Transformer(nnx.Module):
    """The decoder as an NNX module; `model(tokens)` returns fp32 logits [B, T, V].

    Args:
      config: the model's shapes and switches.
      rngs: random init (`from_weights` builds a model around loaded weights instead).
      param_dtype: dtype of the stored weights.
      dtype: compute dtype of activations (default: `param_dtype`); e.g. fp32 master weights
        with bf16 compute.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32,
                 dtype=None):
        self.config = config
        self.dtype = dtype
        self.source: str | None = None  # where `from_weights` read the weights (Weights.source)
        self.layers = _Layers()
        for name, spec in param_specs(config).items():
            value = init_value(spec, rngs.params(), param_dtype)
            owner, attr = self._owner(name)
            setattr(owner, attr, nnx.Param(value, axes=spec.axes))

    @classmethod
    def from_weights(cls, weights: Weights) -> Transformer:
        """The module holding `weights` as they are (no init, no copy), with their config,
        generation config and identity."""
        model = nnx.eval_shape(lambda: cls(weights.config, rngs=nnx.Rngs(0)))
        for name, array in weights.params().items():
            model.param(name).set_value(array)
        model.generation_config = weights.generation_config
        model.source = weights.source
        model.identity = weights.identity
        return model

    def _owner(self, name: str) -> tuple[nnx.Module, str]:
        return (self.layers, name[7:]) if name.startswith("layers.") else (self, name)

    def param(self, name: str) -> nnx.Param:
        owner, attr = self._owner(name)
        return getattr(owner, attr)

    def params(self) -> dict[str, Array]:
        """Flat {name: array} of every weight, the form `forward` takes."""
        return {name: self.param(name).get_value() for name in param_specs(self.config)}

    def __call__(self, tokens: Int[Array, "B T"], *, positions=None, segment_ids=None,
                 cache: KVCache | None = None, remat: Remat = "none"):
        logits, new_cache = forward(self.config, self.params(), tokens, positions, segment_ids,
                                    cache, dtype=self.dtype, remat=remat)
        return logits if cache is None else (logits, new_cache)
