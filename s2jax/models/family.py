"""What a model family decides: which HF architectures it reads, the config fields only it has,
the names of its norms, and its decoder block.

Each family is one module that builds one `Family` (`llama.py`: Llama 2/3, Mistral, Qwen2, Qwen3;
`gemma.py`: Gemma 2 and 3); `config.FAMILIES` lists them and is the one place that picks one.
Everything else (the weight table, `forward`, import and export) is shared and reads the
family's choices from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from s2jax.core.errors import S2JaxError

if TYPE_CHECKING:
    from s2jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family's choices.

    `read_hf(hf, model_type, num_layers, source) -> (rope, fields)` reads its HF config dict
    (with `hf_defaults` filled in): the rope parameters (`rope.parse_rope`) and the other
    `ModelConfig` fields it sets; it refuses, naming the field, what it does not implement.
    `write_hf(cfg, rope) -> fields` are its fields of an exported `config.json`.
    `block(cfg, lp, x, attend, dtype) -> x` is one decoder layer over this layer's weights `lp`;
    it calls `attend(q, k, v)` (rope, KV cache, window mask, attention) between its projections.
    `norm(x, w, eps)` is its RMSNorm, also applied after the last layer.
    """

    architectures: Mapping[str, tuple[str, bool, bool]]  # arch -> (model_type, qkv_bias, qk_norm)
    unsupported: Mapping[str, str]  # near-miss architectures -> why they are refused
    hf_defaults: Mapping[str, Mapping[str, Any]]  # model_type -> transformers' defaults
    read_hf: Callable[[dict, str, int, str], tuple[dict, dict]]
    write_hf: Callable[[ModelConfig, dict], dict]
    # each layer's norms: our name -> its HF key under `model.layers.{i}.`
    layer_norms: Mapping[str, str]
    norm_init: Literal["ones", "zeros"]  # the identity of `norm`
    block: Callable[..., Any]
    norm: Callable[..., Any]
    scale_embeddings: bool  # embeddings times sqrt(D)


def refuse_changed(hf: dict, expected: Mapping[str, Any], source: str) -> None:
    """Each field of `expected` must be absent, None, or its expected value: a field whose other
    values change the math and that s2jax does not implement is an error naming it."""
    for field, default in expected.items():
        value = hf.get(field, default)
        if value != default and value is not None and not (value == 0 and default == 0.0):
            raise S2JaxError(
                f"{source}: field {field!r} = {value!r} is not implemented by s2jax "
                f"(expected {default!r})"
            )
