"""Sampling methods on a batch of logits: greedy, temperature, top-k, top-p and min-p.

A method is a frozen, hashable dataclass, so it is a static argument of the jitted prefill and
decode programs: `top_k` then has a static size (a top-k instead of a full sort) and greedy
compiles no random-number code at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from s2jax.core.text_generator import SamplingParams

ARGMAX_BLOCK = 128


def argmax(x: Float[Array, "B V"]) -> Int[Array, " B"]:
    """`jnp.argmax` over the last axis (the first maximum; rows holding NaN are unspecified), in two
    passes: the block of `ARGMAX_BLOCK` holding the maximum, then the maximum in that block.

    XLA:CPU lowers argmax to a (value, index) reduction it does not vectorize; the block maxima
    are a plain max, and the two small argmaxes are cheap: 10x faster at V = 8k-49k (0.24 vs 2.4
    ms for 64 rows x 8,192), where it was a sixth of a greedy decode step of a 3M model.
    """
    B, V = x.shape
    if V <= ARGMAX_BLOCK:
        return jnp.argmax(x, axis=-1).astype(jnp.int32)
    pad = -V % ARGMAX_BLOCK
    if pad:  # -inf never beats a real entry, and an all -inf row gives 0 either way
        x = jnp.pad(x, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    blocks = x.reshape(B, -1, ARGMAX_BLOCK)
    best = jnp.argmax(jnp.max(blocks, axis=-1), axis=-1)
    inner = jnp.argmax(jnp.take_along_axis(blocks, best[:, None, None], axis=1)[:, 0], axis=-1)
    return (best * ARGMAX_BLOCK + inner).astype(jnp.int32)


TOP_K_BLOCK = 32


def top_k(x: Float[Array, "B V"], k: int) -> tuple[Float[Array, "B k"], Int[Array, "B k"]]:
    """`lax.top_k` (values sorted descending, equal values in index order), in two passes
    where the vocabulary is large: the k blocks of `TOP_K_BLOCK` with the largest maxima, then
    the top k of those k blocks' entries.

    Every top-k entry lies in one of those blocks (an entry outside them has k larger block
    maxima above it). XLA:CPU's TopK sorts each row on one thread, at ~2 ns an entry; block
    maxima are a vectorized max. At V = 49,152, k = 40 for 32 rows: 1.0 vs 3.1 ms, a step of
    SmolLM2's sampler. Where the blocks would not cut the entries to sort by 4x, one pass.
    """
    B, V = x.shape
    blocks = -(-V // TOP_K_BLOCK)
    if blocks < 4 * k:
        return jax.lax.top_k(x, k)
    pad = blocks * TOP_K_BLOCK - V  # -inf pads sort after every real entry
    x = jnp.pad(x, ((0, 0), (0, pad)), constant_values=-jnp.inf).reshape(B, blocks, TOP_K_BLOCK)
    _, best = jax.lax.top_k(jnp.max(x, axis=-1), k)
    best = jnp.sort(best, axis=-1)  # in index order, so ties break as in one pass
    candidates = jnp.take_along_axis(x, best[:, :, None], axis=1).reshape(B, k * TOP_K_BLOCK)
    values, at = jax.lax.top_k(candidates, k)
    ids = jnp.take_along_axis(best, at // TOP_K_BLOCK, axis=1) * TOP_K_BLOCK + at % TOP_K_BLOCK
    return values, ids.astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class SamplingMethod:
    """Temperature sampling restricted by top-k, then top-p, then min-p (the `transformers` order).

    `temperature == 0` is greedy, and the filters are then ignored.
    """

    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    min_p: float = 0.0  # 0.0: off

    @classmethod
    def from_params(cls, params: SamplingParams) -> SamplingMethod:
        if params.temperature == 0:
            return cls()  # one greedy program, whatever filters were asked for
        return cls(float(params.temperature), int(params.top_k), float(params.top_p),
                   float(params.min_p))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def candidates(self, logits: Float[Array, "B V"]
                   ) -> tuple[Float[Array, "B C"], Int[Array, "B C"] | None]:
        """Scaled logits of the C candidate tokens (-inf where filtered out) and their ids.

        Ids are None when the candidates are the whole vocabulary in order (C = V).
        """
        x = logits.astype(jnp.float32) / self.temperature
        ids = None
        if 0 < self.top_k < x.shape[-1]:
            x, ids = top_k(x, self.top_k)  # sorted, descending
        elif self.top_p < 1.0:
            ids = jnp.argsort(-x, axis=-1)
            x = jnp.take_along_axis(x, ids, axis=-1)
        if self.top_p < 1.0:
            # keep the smallest prefix whose probability reaches top_p; the first always stays
            probs = jax.nn.softmax(x, axis=-1)
            before = jnp.cumsum(probs, axis=-1) - probs
            x = jnp.where(before < self.top_p, x, -jnp.inf)
        if self.min_p > 0.0:
            # p >= min_p * p_max  <=>  logit >= max logit + log(min_p): no softmax needed
            floor = jnp.max(x, axis=-1, keepdims=True) + jnp.log(self.min_p)
            x = jnp.where(x >= floor, x, -jnp.inf)
        return x, ids

    def __call__(self, logits: Float[Array, "B V"], keys: jax.Array) -> Int[Array, " B"]:
        """One token per row; row b draws with `keys[b]` (unused when greedy)."""
        if self.greedy:
            return argmax(logits)
        x, ids = self.candidates(logits)
        # `jax.random.categorical` (Gumbel-max, the same noise) with the faster argmax
        noise = jax.vmap(lambda key: jax.random.gumbel(key, x.shape[1:], x.dtype))(keys)
        choice = argmax(noise + x)
        if ids is None:
            return choice.astype(jnp.int32)
        return jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


def prompt_key(ids: Sequence[int]) -> int:
    """A prompt's random-stream identity: a 31-bit hash of its token ids (host side).

    Keying rows by what they are rather than where they sit makes sample j of prompt x the same
    draw in any call: a stored N=16 sample set holds an N=4 run's samples as its first 4, and a
    prompt's samples do not change when the inputs around it (a shard, a fold) do.
    """
    digest = hashlib.blake2b(np.asarray(ids, np.int32).tobytes(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def row_keys(seed: Int[Array, ""], prompt_ids: Int[Array, " B"], sample_ids: Int[Array, " B"],
             steps: Int[Array, " B"]) -> jax.Array:
    """The key of each row's next token: a function of (seed, prompt, sample, step) only.

    `prompt_ids` are `prompt_key`s of the rows' prompts. Nothing about batch placement enters,
    so outputs do not depend on the batch size, the order rows are refilled in, whether samples
    share a prefill, the mesh, or which other prompts share the call.
    """
    base = jax.random.key(seed)

    def one(p, s, t):
        return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, p), s), t)

    return jax.vmap(one)(prompt_ids, sample_ids, steps)
