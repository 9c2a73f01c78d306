"""The projections of a decoder block, x @ W, with the LoRA term where W carries an adapter.

LoRA adapters ride in a layer's weight dict beside the weight W they adapt: `name + LORA_A` is
A (W's input axes, then the rank), `name + LORA_B` is B (the rank, then W's output axes), and
LORA_SCALE is alpha / rank. Every family's block projects through `project`, so a model with
adapters needs no other code path; see s2jax/models/lora.py for their description and export.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

LORA_A, LORA_B, LORA_SCALE = ".lora_a", ".lora_b", "lora_scale"


def project(lp: dict[str, Array], name: str, eq: str, x: Array, dtype) -> Array:
    """`einsum(eq, x, W)` for W = lp[name], plus scale * (x @ A) @ B where W has an adapter
    (W is never merged: the adapter's two thin matmuls cost O(rank) per token)."""
    y = jnp.einsum(eq, x, lp[name].astype(dtype))
    if name + LORA_A not in lp:
        return y
    a, b = lp[name + LORA_A].astype(dtype), lp[name + LORA_B].astype(dtype)
    xa = jnp.tensordot(x, a, axes=a.ndim - 1) * lp[LORA_SCALE].astype(dtype)
    return y + jnp.tensordot(xa, b, axes=1)
