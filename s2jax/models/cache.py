"""The KV cache: every layer's keys and values, stacked or as per-layer buffers."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from s2jax.models.config import ModelConfig
from s2jax.models.projection import from_bits, to_bits


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Keys and values of every layer. Slot s of row b holds the token at position s of row b.

    Heads come before slots so a layer's [B, K, S, H] block is what the attention dot reads,
    with no transposed copy per decode step.
    """

    k: Float[Array, "L B K S H"]  # or, split, a tuple of L [B, K, S, H] arrays
    v: Float[Array, "L B K S H"]

    @classmethod
    def zeros(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        return cls(jnp.zeros(cls.shape(cfg, batch, max_len), dtype),
                   jnp.zeros(cls.shape(cfg, batch, max_len), dtype))

    @property
    def slots(self) -> int:
        return self.k[0].shape[-2]  # a layer's [B, K, S, H], stacked or split

    def split(self, slots: int) -> KVCache:
        """The first `slots` slots as per-layer buffers: tuples of L [B, K, slots, H] arrays,
        which `forward` runs over with its layers unrolled."""
        return KVCache(*(tuple(c[i, :, :, :slots] for i in range(c.shape[0]))
                         for c in (self.k, self.v)))

    @property
    def per_layer(self) -> bool:
        """Whether k and v are tuples of per-layer buffers (`split`), not stacked arrays."""
        return isinstance(self.k, tuple)

    def _map(self, fn, other: KVCache | None = None) -> KVCache:
        """`fn(x, o, lead)` on the keys and on the values, in either layout: on each per-layer
        buffer (`lead` = ()), or once on the stacked array (`lead` = (:,), the layer axis).
        `o` is the matching part of `other` (its layer i for a buffer), else None."""
        def each(part, other_part):
            if isinstance(part, tuple):
                return tuple(fn(c, None if other_part is None else other_part[i], ())
                             for i, c in enumerate(part))
            return fn(part, other_part, (slice(None),))

        return KVCache(each(self.k, other and other.k), each(self.v, other and other.v))

    def take_rows(self, rows: Int[Array, " R"]) -> KVCache:
        return self._map(lambda c, _, lead: c[(*lead, rows)])

    def first_slots(self, n: int) -> KVCache:
        """The first `n` slots of every row (a copy), in this cache's layout."""
        return self._map(lambda c, _, lead: c[(*lead, slice(None), slice(None), slice(None, n))])

    def with_first_slots(self, part: KVCache) -> KVCache:
        """This cache with `part` (from `first_slots`) written back over its first slots."""
        return self._map(lambda c, w, _: from_bits(
            jax.lax.dynamic_update_slice(to_bits(c), to_bits(w), (0,) * c.ndim), c.dtype), part)

    def with_rows(self, dest: Int[Array, " R"], prompts: KVCache, src: Int[Array, " R"]
                  ) -> KVCache:
        """This cache with rows `dest` (out of range: dropped) starting with the slots of rows
        `src` of the stacked cache `prompts`.

        Every row gathers the prompt row it starts from and selects it over its first slots
        (rows not in `dest` keep theirs): XLA:CPU runs that at copy speed, where a scatter of
        whole rows took 36 ms at SmolLM2-135M shapes (32 rows of 48 slots into 64) in fp32 and
        74 in bf16."""
        B, T = self.k[0].shape[-4], prompts.slots
        row_src = jnp.full((B,), -1, jnp.int32).at[dest].set(src, mode="drop")
        hit, take = (row_src >= 0)[:, None, None, None], jnp.maximum(row_src, 0)

        def put(c, p, lead):
            first = (*lead, slice(None), slice(None), slice(None, T))
            bits = to_bits(c)
            new = jnp.where(hit, to_bits(p)[(*lead, take)], bits[first])
            return from_bits(bits.at[first].set(new), c.dtype)

        return self._map(put, prompts)

    @staticmethod
    def shape(cfg: ModelConfig, batch: int, max_len: int) -> tuple[int, ...]:
        return (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)

    AXES = ("layers", "batch", "kv_heads", "cache_seq", "head_dim")
