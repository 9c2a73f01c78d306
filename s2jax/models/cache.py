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

    Heads come before slots, so a layer's block is what the attention products read with no
    transposed copy per decode step. Keys keep their slots last ([B, K, H, S], `keys_last`)
    except on TPU: a decode step's scores then reduce over the head dim with the slots
    contiguous, which XLA:CPU runs as a vectorised loop on every core
    (`attention.attention`); a TPU tiles the two minor dims of an array by (8, 128), so
    slots last would pad a short cache's keys to 128 slots. Values keep [B, K, S, H].
    """

    k: Float[Array, "L B K H S"]  # or [L, B, K, S, H] (not `keys_last`); split: L [B, K, ...]
    v: Float[Array, "L B K S H"]  # or, split, a tuple of L [B, K, S, H] arrays
    keys_last: bool = dataclasses.field(default=True, metadata=dict(static=True))

    @classmethod
    def zeros(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.float32, *,
              keys_last: bool = True) -> KVCache:
        k, v = cls.shapes(cfg, batch, max_len, keys_last=keys_last)
        return cls(jnp.zeros(k, dtype), jnp.zeros(v, dtype), keys_last)

    @property
    def slots(self) -> int:
        return self.v[0].shape[-2]  # a layer's [B, K, S, H] values, stacked or split

    def split(self, slots: int) -> KVCache:
        """The first `slots` slots as per-layer buffers: tuples of L arrays, which `forward`
        runs over with its layers unrolled."""
        return KVCache(*(tuple(c[(i, *self._slots(part, slice(None, slots)))]
                               for i in range(c.shape[0]))
                         for part, c in (("k", self.k), ("v", self.v))), self.keys_last)

    def _slots(self, part: str, s: slice) -> tuple[slice, ...]:
        """The index of slots `s` in a layer's [B, K, H, S] or [B, K, S, H] block of `part`."""
        last = part == "k" and self.keys_last
        return (slice(None),) * (3 if last else 2) + (s,)

    @property
    def per_layer(self) -> bool:
        """Whether k and v are tuples of per-layer buffers (`split`), not stacked arrays."""
        return isinstance(self.k, tuple)

    def _map(self, fn, other: KVCache | None = None) -> KVCache:
        """`fn(x, o, lead, part)` on the keys (`part` "k") and on the values ("v"), in either
        layout: on each per-layer buffer (`lead` = ()), or once on the stacked array (`lead` =
        (:,), the layer axis). `o` is the matching part of `other` (its layer i for a buffer),
        else None."""
        def each(name, part, other_part):
            if isinstance(part, tuple):
                return tuple(fn(c, None if other_part is None else other_part[i], (), name)
                             for i, c in enumerate(part))
            return fn(part, other_part, (slice(None),), name)

        return KVCache(each("k", self.k, other and other.k),
                       each("v", self.v, other and other.v), self.keys_last)

    def take_rows(self, rows: Int[Array, " R"]) -> KVCache:
        return self._map(lambda c, _, lead, part: c[(*lead, rows)])

    def first_slots(self, n: int) -> KVCache:
        """The first `n` slots of every row (a copy), in this cache's layout."""
        return self._map(lambda c, _, lead, part: c[(*lead, *self._slots(part, slice(None, n)))])

    def with_first_slots(self, part: KVCache) -> KVCache:
        """This cache with `part` (from `first_slots`) written back over its first slots."""
        return self._map(lambda c, w, _, __: from_bits(
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

        def put(c, p, lead, part):
            first = (*lead, *self._slots(part, slice(None, T)))
            bits = to_bits(c)
            new = jnp.where(hit, to_bits(p)[(*lead, take)], bits[first])
            return from_bits(bits.at[first].set(new), c.dtype)

        return self._map(put, prompts)

    @staticmethod
    def shapes(cfg: ModelConfig, batch: int, max_len: int, *, keys_last: bool = True
               ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The stacked keys' and values' shapes: [L, B, K, H, S] (or [L, B, K, S, H], not
        `keys_last`) and [L, B, K, S, H]."""
        lead = (cfg.num_layers, batch, cfg.num_kv_heads)
        v = (*lead, max_len, cfg.head_dim)
        return ((*lead, cfg.head_dim, max_len) if keys_last else v), v

    @staticmethod
    def axes(keys_last: bool = True) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The logical axes of the stacked keys and values."""
        v = ("layers", "batch", "kv_heads", "cache_seq", "head_dim")
        return ((*v[:3], "head_dim", "cache_seq") if keys_last else v), v
