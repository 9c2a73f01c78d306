"""Attention: grouped-query attention over a KV cache, and a sequence's attention over itself
(the training path, cuDNN's flash kernel where it can take the call).

Shapes use einsum letters: B batch, T query tokens, S key slots, N query heads, K KV heads,
G = N / K, H head dim.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from s2jax.models.projection import dot_operands

# Causal self-attention on CPU runs in blocks of about this many queries, each over the keys up to
# its own last one: the blocks above the diagonal, masked anyway, are never computed. At
# SmolLM2-135M's shapes (4 rows, 9/3 heads of 64), 30 layers' forward and backward with the
# products recomputed: 336 tokens 1.64 -> 1.13 s in 4 blocks, 1024 tokens 4.1 -> 1.8 s a
# 6-layer stack in 11 (blocks of 64-128 queries were the fastest; a block of 32 costs more in
# small products than it saves).
CAUSAL_BLOCK = 96


def softcap(x: Array, cap: float | None) -> Array:
    """cap * tanh(x / cap) (Gemma 2's soft-capping of attention scores and logits)."""
    return x if cap is None else jnp.tanh(x / cap) * cap


def attention(q: Float[Array, "B T N H"], k: Float[Array, "B K S H"] | Float[Array, "B K H S"],
              v: Float[Array, "B K S H"], mask: Float[Array, "B T S"], *,
              scale: float | None = None, logit_softcap: float | None = None,
              keys_last: bool = False) -> Float[Array, "B T N H"]:
    """Grouped-query attention with a boolean mask (True = attend); softmax in fp32.

    Scores are scaled by `scale` (default H^-1/2), then soft-capped when `logit_softcap` is set.
    `keys_last`: k is given as [B, K, H, S], the KV cache's layout of keys.

    Both products are plain batched matmuls over (B, K), with a KV head's G query heads and T
    tokens as the rows of one [G*T, H] matrix: XLA:CPU runs that form as one batched GEMM,
    where the [B, T, K, G, H] form made it emit a generic dot with a transposed operand for
    the P.V product (decode at SmolLM2 shapes: 1.0 -> 0.57 ms a layer; prefill 30% less).

    A decode step on CPU (one query token, keys last) sums elementwise products instead
    (`_decode_products`).
    """
    B, T, N, H = q.shape
    K, S = k.shape[1], k.shape[-1 if keys_last else 2]
    G = N // K
    q = q.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, H)
    decode = keys_last and T == 1 and jax.default_backend() == "cpu"
    if decode:
        s = _decode_products(q, k)
    else:
        eq = "bkmh,bkhs->bkms" if keys_last else "bkmh,bksh->bkms"
        s = jnp.einsum(eq, *dot_operands(q, k), preferred_element_type=jnp.float32)
    s = softcap(s * (H**-0.5 if scale is None else scale), logit_softcap).reshape(B, K, G, T, S)
    s = jnp.where(mask[:, None, None], s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype).reshape(B, K, G * T, S)
    if decode:
        o = _decode_products(p, v).astype(v.dtype)
    else:
        o = jnp.einsum("bkms,bksh->bkmh", *dot_operands(p, v)).astype(v.dtype)
    return o.reshape(B, K, G, T, H).transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)


# A decode step's products sum over at most this many slots (or head dims) in one unrolled
# expression, looping over such chunks (`_decode_products`): more compile longer, no faster.
DECODE_CHUNK = 16


def _decode_products(a: Float[Array, "B K G X"], b: Float[Array, "B K X Y"]
                     ) -> Float[Array, "B K G Y"]:
    """sum_x a[..., g, x] * b[..., x, y] in fp32: a decode step's scores (q [G, H] by keys
    [H, S]) or weighted values (p [G, S] by values [S, H]), as sums of elementwise products.

    XLA:CPU runs the (B x K)-batched [G, X] x [X, Y] products of a decode step (G = 3 rows at
    SmolLM2's shapes) as small GEMMs on one core, and a multiply-and-reduce as a materialised
    product (its reductions over more than 32 elements are rewritten as trees). A sum of
    [B, K, G, Y] products, unrolled over a chunk of x and looped over the chunks, is one
    vectorised loop over the contiguous Y, split over every core. The 30 layers' attention of
    32 rows (9 query on 3 KV heads of 64) on 2 Zen 3 cores (`bench/decode_attention.py`): 128
    slots 28.7 -> 19.0 ms, 512 slots 139 -> 69 ms; its program compiles in 2.6 s against 0.3.
    Chunks of 32 ran as fast and compiled in 4.3 s.
    """
    X = a.shape[-1]
    c = max(d for d in range(1, min(X, DECODE_CHUNK) + 1) if X % d == 0)
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)  # fp32 products, as the dots'

    def chunk(i, acc):
        ac = jax.lax.dynamic_slice_in_dim(a, i * c, c, 3)
        bc = jax.lax.dynamic_slice_in_dim(b, i * c, c, 2)
        terms = [ac[:, :, :, j, None] * bc[:, :, None, j, :] for j in range(c)]
        while len(terms) > 1:  # a tree of sums: half the rounding of a running sum
            terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j]
                     for j in range(0, len(terms), 2)]
        return acc + terms[0]

    zero = jnp.zeros((*a.shape[:3], b.shape[-1]), jnp.float32)
    if c == X:
        return chunk(0, zero)
    return jax.lax.fori_loop(0, X // c, chunk, zero)


def self_attention(q: Float[Array, "B T N H"], k: Float[Array, "B T K H"],
                   v: Float[Array, "B T K H"], mask: Float[Array, "B T T"], *,
                   scale: float | None = None, logit_softcap: float | None = None,
                   causal: bool = False, reach: int | None = None,
                   implementation: Literal["cudnn", "xla"] | None = None
                   ) -> Float[Array, "B T N H"]:
    """Attention of a sequence over itself (no KV cache): the training path.

    `causal=True` promises that `mask` allows nothing above the diagonal (packing and sliding
    windows only take more away); cuDNN then skips those blocks, half of the work, which it
    cannot tell from an arbitrary mask.

    On CPU, a causal call runs the einsum `attention` in blocks of queries (`causal_blocks`),
    each over the keys up to its own last, skipping the blocks above the diagonal. `reach`
    promises more: no query may attend to a key `reach` or more positions before it (packed
    rows whose longest example has `reach` tokens); each block then also skips the keys out of
    its first query's reach. At SmolLM2's shapes, 8 packed rows of 512 holding examples of at
    most 148 tokens: 6 layers' attention forward and backward 1.02 -> 0.66 s, a whole SFT step
    4-5% faster (`bench/train.py --data`).

    On GPU this is `jax.nn.dot_product_attention` with cuDNN's flash kernel, which never holds
    the fp32 [T, T] scores (the mask goes in as a [B, 1, T, T] bias of the compute dtype);
    where cuDNN cannot take the call (fp32, soft-capped scores, shapes it lacks) and on CPU, it
    is the einsum `attention`, which measured as fast as or faster than
    `jax.nn.dot_product_attention`'s XLA version on CPU. `implementation` forces the latter
    ("xla" or "cudnn"), for tests.
    """
    if implementation is None and logit_softcap is None and jax.default_backend() == "gpu":
        try:
            return self_attention(q, k, v, mask, scale=scale, causal=causal,
                                  implementation="cudnn")
        except (ValueError, NotImplementedError, RuntimeError):  # a call cuDNN cannot take
            pass
    if implementation is None or logit_softcap is not None:
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
        T = q.shape[1]
        spans = causal_spans(T, reach) if causal and jax.default_backend() == "cpu" else [
            (0, T, 0)]
        # each block of queries over its keys; a query that may attend to none (padding)
        # averages the values of those keys instead
        return jnp.concatenate([
            attention(q[:, a:b], k[:, :, f:b], v[:, :, f:b], mask[:, a:b, f:b], scale=scale,
                      logit_softcap=logit_softcap) for a, b, f in spans], axis=1)
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale,
                                        is_causal=causal, implementation=implementation)


def causal_blocks(T: int) -> list[int]:
    """Bounds of the blocks of about `CAUSAL_BLOCK` queries that causal self-attention on CPU
    runs one by one: [0, ..., T], as even as whole tokens allow."""
    n = -(-T // CAUSAL_BLOCK)
    return [T * i // n for i in range(n + 1)]


def causal_spans(T: int, reach: int | None = None) -> list[tuple[int, int, int]]:
    """(a, b, f) for each block of `causal_blocks(T)`: queries [a, b) attend over keys [f, b),
    f being the first key within `reach` of query a (0 without a reach)."""
    return [(a, b, max(0, a - reach + 1) if reach else 0)
            for a, b in pairwise(causal_blocks(T))]


def step_reach(longest: int, T: int) -> int | None:
    """The `reach` a train step over rows of T tokens is compiled for when no example is longer
    than `longest`: `longest` rounded up to a multiple of an eighth of the power of two above
    it (at least 8; 148 -> 160), so that runs on similar data (a sweep's stages, the demo's
    tasks) share one compiled step; None where the blocks would skip less than a quarter of the
    causal scores (not worth a compile of its own)."""
    step = max(8, 1 << max(0, longest.bit_length() - 3))
    reach = max(1, -(-longest // step)) * step
    causal = sum((b - a) * b for a, b, _ in causal_spans(T))
    skipped = sum((b - a) * f for a, b, f in causal_spans(T, reach))
    return reach if 4 * skipped >= causal else None
