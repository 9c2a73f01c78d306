"""A checkpoint's weights on their mesh with its config: what sampling needs of a model.

Its own module so that import (hf, gguf), the Flax module (module) and the sampler depend on it
without depending on each other.
"""

from __future__ import annotations

import dataclasses

import jax

from s2jax.models.config import ModelConfig


@dataclasses.dataclass
class Weights:
    """A checkpoint's weights placed on their mesh, with its config: a model without the module.

    `s2jax.load` wraps them in a `Transformer` (a Flax NNX module); sampling needs only these
    (`config`, `params()`, `generation_config`: what the `Sampler` reads of a model), so
    `s2jax generate` samples from them without importing Flax.
    """

    config: ModelConfig
    arrays: dict[str, jax.Array]  # every weight of `param_specs(config)`, by name
    generation_config: dict = dataclasses.field(default_factory=dict)  # generation_config.json
    # the checkpoint directory or GGUF file read (absolute): the base an exported adapter names
    source: str | None = None
    identity: str | None = None  # which files they came from (`s2jax.models.loading.identity`)

    def params(self) -> dict[str, jax.Array]:
        """Flat {name: array} of every weight, the form `forward` takes."""
        return self.arrays
