"""The projections of a decoder block, x @ W, with the LoRA term where W carries an adapter.

LoRA adapters ride in a layer's weight dict beside the weight W they adapt: `name + LORA_A` is
A (W's input axes, then the rank), `name + LORA_B` is B (the rank, then W's output axes), and
LORA_SCALE is alpha / rank. Every family's block projects through `project`, so a model with
adapters needs no other code path; see s2jax/models/lora.py for their description and export.

Every product runs as one 2-D matmul, tokens x inputs times inputs x outputs (free reshapes of
row-major arrays). A weight gradient contracted over two token axes (batch and time) makes
XLA:CPU canonicalise the dot by writing out a transposed copy of an operand, such as the whole
SwiGLU backward [F, B*T]; over the single flattened token axis it calls the matmul with the
operand transposed in place. On the 5M SFT step those copies were about 1/6 of the op time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array

LORA_A, LORA_B, LORA_SCALE = ".lora_a", ".lora_b", "lora_scale"


def xla_cpu_16bit(dtype) -> bool:
    """Whether `dtype` is a 16-bit float computed by XLA:CPU, which runs such products and moves
    such arrays fast only in some forms.

    A bf16 x bf16 matmul with an fp32 result runs on the CPU's bf16 dot products (AVX512-BF16),
    one with a bf16 result through a slower generic path (`matmul` asks for fp32 results).
    Measured on a 2-core Zen 4, SmolLM2 shapes: [1200, 576] x [576, 1536] at 425 against 206
    GFLOP/s (fp32: 207), [32, 576] x [576, 1536] at 258 against 132; bf16 sampling went from 241
    to 343 tokens/s. It has no 16-bit dynamic slice, update, scatter or gather either (the
    layer scan, the KV cache writes and the embedding move the bits:
    `s2jax.models.transformer`). GPUs and TPUs accumulate bf16 products in fp32 inside the
    matmul unit either way, and keep bf16 outputs.
    """
    dtype = jnp.dtype(dtype)
    return (jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize == 2
            and jax.default_backend() == "cpu")


def matmul(x: Array, w: Array, n_in: int) -> Array:
    """x [..., *in] @ w [*in, *out] -> [..., *out], for the `n_in` leading axes of w, as a
    [tokens, prod(in)] x [prod(in), prod(out)] matmul, in x's dtype (accumulated in fp32 where
    `xla_cpu_16bit`)."""
    k = math.prod(w.shape[:n_in])
    lead, out = x.shape[:x.ndim - n_in], w.shape[n_in:]
    acc = jnp.float32 if xla_cpu_16bit(x.dtype) else None
    y = jnp.dot(x.reshape(-1, k), w.reshape(k, -1), preferred_element_type=acc)
    return y.astype(jnp.result_type(x, w)).reshape(*lead, *out)


def project(lp: dict[str, Array], name: str, eq: str, x: Array, dtype) -> Array:
    """`einsum(eq, x, W)` for W = lp[name], plus scale * (x @ A) @ B where W has an adapter
    (W is never merged: the adapter's two thin matmuls cost O(rank) per token).

    `eq` names the axes; W's leading axes must be x's trailing ones, in order (they are
    contracted), and the output is x's other axes followed by W's others."""
    (xs, ws), out = eq.split("->")[0].split(","), eq.split("->")[1]
    n_in = sum(c in xs for c in ws)
    if ws[:n_in] != xs[len(xs) - n_in:] or out != xs[:len(xs) - n_in] + ws[n_in:]:
        raise ValueError(f"project: {eq!r} is not x's trailing axes times W's leading ones")
    y = matmul(x, lp[name].astype(dtype), n_in)
    if name + LORA_A not in lp:
        return y
    a, b = lp[name + LORA_A].astype(dtype), lp[name + LORA_B].astype(dtype)
    xa = matmul(x, a, n_in) * lp[LORA_SCALE].astype(dtype)
    return y + matmul(xa, b, 1)
