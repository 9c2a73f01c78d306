"""The decoder's forward pass, shared by every family: embedding, masks, KV cache, rope,
attention, the layers under `lax.scan` (or unrolled over a per-layer cache), output logits.

What a family changes is its `Family` (`family.py`): its decoder block and RMSNorm
(`llama.py`, `gemma.py`). The weights are described in `params.py`, the cache in `cache.py`,
attention in `attention.py` (on TPU, the training forward and one-pass prefill attend with the
splash kernel of `splash.py`).

Shapes use einsum letters (see `s2jax/__init__.py`): B batch, T query tokens, S key slots,
D model dim, F MLP dim, N query heads, K KV heads, G = N / K, H head dim, V vocab, L layers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jaxtyping import Array, Bool, Float, Int

from s2jax.models import splash
from s2jax.models.attention import attention, self_attention, softcap
from s2jax.models.cache import KVCache
from s2jax.models.config import ModelConfig
from s2jax.models.projection import LORA_SCALE, from_bits, matmul_out_in, to_bits, xla_cpu_16bit
from s2jax.models.rope import apply_rope, rope_table
from s2jax.parallel.sharding import logical_to_spec

Remat = Literal["auto", "none", "full", "dots"]


def resolve_remat(remat: Remat) -> Remat:
    """The policy "auto" stands for on this backend: "dots" on CPU, "none" elsewhere.

    On XLA:CPU, saving every layer's residuals for the backward pass (remat "none") is slower
    than recomputing the elementwise ops and attention from the saved matmul outputs ("dots"):
    the saved residuals are written into stacked buffers, zero-filled first, and faulted in
    afresh at every step (the step's temporaries: 2.73 GiB at SmolLM2-135M's shapes, 4 x 256
    tokens, against 0.79 GiB with "dots"). Measured there: 9.8 -> 7.3 s a step, gradients
    bitwise equal. On GPUs "none" was what was measured (README); they keep it.
    """
    if remat != "auto":
        return remat
    return "dots" if jax.default_backend() == "cpu" else "none"


def segment_positions(segment_ids: Int[Array, "B T"]) -> Int[Array, "B T"]:
    """Positions that restart at 0 where the segment id changes (packing, left padding)."""
    T = segment_ids.shape[1]
    idx = jnp.arange(T)[None, :]
    starts = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], 1)
    return idx - jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)


def forward(
    cfg: ModelConfig,
    params: dict[str, Array],
    tokens: Int[Array, "B T"],
    positions: Int[Array, "B T"] | None = None,
    segment_ids: Int[Array, "B T"] | None = None,
    cache: KVCache | None = None,
    *,
    dtype=None,
    remat: Remat = "none",
    return_hidden: bool = False,
    mesh: Mesh | None = None,
    prefill: bool = False,
    reach: int | None = None,
) -> tuple[Float[Array, "B T V"], KVCache | None]:
    """Logits [B, T, V] in fp32 and, with a cache, the cache holding the new keys and values.

    `params` holds every weight of `param_specs`, and optionally LoRA adapters (`projection.py`).

    Without a cache, attention is causal over the T tokens, restricted to equal non-zero
    `segment_ids` when given (packing; 0 marks padding); `reach` promises no segment is longer
    (attention on CPU then skips keys further back). With a cache, token t of row b is written
    to slot `positions[b, t]` and attends to slots <= its position: callers keep positions
    contiguous per row, so the cache has no holes and needs no per-slot mask.

    With a `mesh`, the residual stream is constrained to be split over the batch axes at every
    layer: else XLA may gather the batch, not the (fsdp-sharded) weights, on every device.

    `prefill=True` promises a cache of T slots that holds nothing yet and positions 0..T-1 in
    every row (a whole prompt in one pass): attention over the cache is then causal attention
    over this call's keys, which on TPU runs as splash attention (`splash.py`), as does the
    no-cache path when positions are the default ones.
    """
    dtype = dtype or params["embed"].dtype
    B, T = tokens.shape
    # splash masks by token index: the window must be one over indices, which default
    # positions (and prefill's) are within each segment
    use_splash = splash.use_splash(mesh) and (prefill or (cache is None and positions is None))
    if positions is None:
        positions = (segment_positions(segment_ids) if segment_ids is not None
                     else jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T)))
    embed = params["embed"]  # gathered as bits on CPU: no fp32 copy of a bf16 table per call
    x = from_bits(jnp.take(to_bits(embed), tokens, axis=0), embed.dtype).astype(dtype)
    x = _constrain(x, mesh)
    if cfg.family.scale_embeddings:  # by sqrt(D) rounded to the compute dtype, as HF does
        x = x * jnp.asarray(cfg.hidden_size**0.5, dtype)
    k_pos, mask = _base_mask(positions, segment_ids, cache)
    layers = _Layers(cfg, dtype, mesh, positions, k_pos, mask, segment_ids, use_splash,
                     cache is None or cache.keys_last, reach if cache is None else None)
    layer_params = {k[7:]: v for k, v in params.items() if k.startswith("layers.")}
    if LORA_SCALE in params:  # LoRA adapters' scale, the same for every layer's `project`
        layer_params[LORA_SCALE] = jnp.broadcast_to(params[LORA_SCALE], (cfg.num_layers,))
    if cache is not None and cache.per_layer:
        x, cache = layers.unrolled(x, layer_params, cache)
    else:
        x, cache = layers.scanned(x, layer_params, cache, resolve_remat(remat))
    x = cfg.family.norm(x, params["final_norm"], cfg.rms_norm_eps)
    if return_hidden:
        return x, cache
    return output_logits(cfg, params, x, dtype), cache


def _constrain(x: Array, mesh: Mesh | None) -> Array:
    """`x` split over the mesh's batch axes on its first axis (a no-op without a mesh)."""
    if mesh is None or mesh.size == 1:
        return x
    spec = logical_to_spec(("batch",) + (None,) * (x.ndim - 1), x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def _base_mask(positions: Int[Array, "B T"], segment_ids: Int[Array, "B T"] | None,
               cache: KVCache | None) -> tuple[Int[Array, "B S"], Bool[Array, "B T S"]]:
    """(the key positions, what each query may attend to before sliding windows): causal over
    the T tokens (within a segment) without a cache, the slots up to its position with one."""
    B, T = positions.shape
    if cache is None:
        idx = jnp.arange(T)
        mask = jnp.broadcast_to(idx[None, :, None] >= idx[None, None, :], (B, T, T))
        if segment_ids is not None:
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            mask = mask & same & (segment_ids[:, None, :] != 0)
        return positions, mask
    k_pos = jnp.broadcast_to(jnp.arange(cache.slots, dtype=jnp.int32), (B, cache.slots))
    return k_pos, k_pos[:, None, :] <= positions[:, :, None]


def _rope_tables(cfg: ModelConfig, positions: Int[Array, "B T"]) -> tuple[list, np.ndarray]:
    """(one `rope_table` per distinct row of the layers' inverse frequencies, each layer's index
    into them): one table for most models, two for Gemma 3 (local and global layers)."""
    distinct, index = np.unique(cfg.rope_inv_freqs(), axis=0, return_inverse=True)
    return [rope_table(positions, jnp.asarray(row)) for row in distinct], index.reshape(-1)


@dataclasses.dataclass(frozen=True)
class _Layers:
    """The decoder layers of one `forward` call: what every layer shares (the tokens'
    positions, the mask), run under a scan over stacked weights or unrolled over a per-layer
    cache; with `use_splash`, attention is the splash kernel's over this call's keys."""

    cfg: ModelConfig
    dtype: Any
    mesh: Mesh | None
    positions: Int[Array, "B T"]
    k_pos: Int[Array, "B S"]
    mask: Bool[Array, "B T S"]
    segment_ids: Int[Array, "B T"] | None = None
    use_splash: bool = False
    keys_last: bool = True  # the cache's layout of keys (`KVCache.keys_last`)
    reach: int | None = None  # no segment is longer (`forward`)

    def layer(self, x, lp, window, rope, kv, write):
        """One layer; `write(kv, k, v) -> (kv, (keys, values))` stores this layer's new keys and
        values in the cache `kv` and returns what to attend over (keys [B, K, H, S] or, not
        `keys_last`, [B, K, S, H]; values [B, K, S, H])."""
        cfg, positions = self.cfg, self.positions

        def attend(q, k, v):
            """This layer's attention of q [B,T,N,H] over k, v [B,T,K,H] (pre-rope): rotates
            them, writes k and v to the cache and reads it back, masks the window."""
            nonlocal kv
            q, k = apply_rope(q, rope), apply_rope(k, rope)
            if kv is not None:
                kv, (ck, cv) = write(kv, k, v)
                # prefill: this call's keys, as the cache holds them
                k, v = (k.astype(ck.dtype), v.astype(ck.dtype)) if self.use_splash else (ck, cv)
                k, v = k.astype(self.dtype), v.astype(self.dtype)
            if self.use_splash:
                return splash.self_attention(q, k, v, self.segment_ids, window=window,
                                             windows=cfg.sliding_windows, scale=cfg.attn_scale,
                                             logit_softcap=cfg.attn_logit_softcap,
                                             mesh=self.mesh)
            in_window = (positions[:, :, None] - self.k_pos[:, None, :]) < window
            mask = self.mask & ((window == 0) | in_window)
            if kv is None:  # no cache (training, scoring): k and v are still [B, T, K, H]
                return self_attention(q, k, v, mask, scale=cfg.attn_scale,
                                      logit_softcap=cfg.attn_logit_softcap, causal=True,
                                      reach=self.reach)
            return attention(q, k, v, mask, scale=cfg.attn_scale,
                             logit_softcap=cfg.attn_logit_softcap, keys_last=self.keys_last)

        return cfg.family.block(cfg, lp, _constrain(x, self.mesh), attend, self.dtype), kv

    def _rows(self) -> Int[Array, "B T"]:
        B, T = self.positions.shape
        return jnp.broadcast_to(jnp.arange(B)[:, None], (B, T))

    def unrolled(self, x, layer_params, cache: KVCache):
        """Over per-layer buffers (`KVCache.split`), layers unrolled: attention reads each
        layer's cache in place, where a scan would copy the layer's block out of the stacked
        cache (and every weight out of the stacked weights) at every step, as XLA:CPU does."""
        rows, positions = self._rows(), self.positions
        tables, index = _rope_tables(self.cfg, positions)

        def write(kv, k, v):
            out = (_write_slots(kv[0], k, rows, positions, slots_last=self.keys_last),
                   _write_slots(kv[1], v, rows, positions, slots_last=False))
            return out, out

        ks, vs = list(cache.k), list(cache.v)
        for i in range(self.cfg.num_layers):
            lp = {name: w[i] for name, w in layer_params.items()}
            x, (ks[i], vs[i]) = self.layer(x, lp, self.cfg.sliding_windows[i], tables[index[i]],
                                           (ks[i], vs[i]), write)
        return x, KVCache(tuple(ks), tuple(vs), cache.keys_last)

    def scanned(self, x, layer_params, cache: KVCache | None, remat: Remat):
        """Under `lax.scan` over the stacked weights (and stacked cache, if any)."""
        rows, positions = self._rows(), self.positions

        dtypes = {name: w.dtype for name, w in layer_params.items()}
        layer_params = {name: to_bits(w) for name, w in layer_params.items()}
        cdt = None if cache is None else cache.k.dtype

        def step(carry, xs):
            x, ck, cv = carry
            lp, window, u, i = xs
            lp = {name: from_bits(w, dtypes[name]) for name, w in lp.items()}
            rope = tables[0] if stacked is None else (stacked[0][u], stacked[1][u])

            def write(kv, k, v):
                # layer i's slots (`_slot_index`): updates are [B,T,K,H] in either layout
                ck, cv = kv
                ck = ck.at[(i, *_slot_index(rows, positions, slots_last=self.keys_last))].set(
                    to_bits(k.astype(cdt)), mode="drop")
                cv = cv.at[(i, *_slot_index(rows, positions, slots_last=False))].set(
                    to_bits(v.astype(cdt)), mode="drop")
                return (ck, cv), (from_bits(ck[i], cdt), from_bits(cv[i], cdt))

            kv = None if ck is None else (ck, cv)
            x, kv = self.layer(x, lp, window, rope, kv, write)
            ck, cv = (None, None) if kv is None else kv
            return (x, ck, cv), None

        if remat == "full":
            step = jax.checkpoint(step)
        elif remat == "dots":
            step = jax.checkpoint(step,
                                  policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
        ck, cv = (None, None) if cache is None else (to_bits(cache.k), to_bits(cache.v))
        tables, index = _rope_tables(self.cfg, positions)
        # several tables (Gemma 3): the layer's, by its index
        stacked = None if len(tables) == 1 else [jnp.stack(t) for t in zip(*tables, strict=True)]
        xs = (layer_params, jnp.asarray(self.cfg.sliding_windows, jnp.int32),
              jnp.asarray(index, jnp.int32), jnp.arange(self.cfg.num_layers))
        (x, ck, cv), _ = jax.lax.scan(step, (x, ck, cv), xs)
        return x, None if cache is None else KVCache(from_bits(ck, cdt), from_bits(cv, cdt),
                                                      cache.keys_last)


def _write_slots(c: Float[Array, "B K H S"] | Float[Array, "B K S H"],
                 new: Float[Array, "B T K H"], rows: Int[Array, "B T"],
                 positions: Int[Array, "B T"], *, slots_last: bool) -> Array:
    """One layer's cache buffer, [B, K, H, S] (`slots_last`: keys) or [B, K, S, H], with token
    t of row b written to slot positions[b, t] (positions past the last slot are dropped).

    A 16-bit cache on CPU (see `_to_bits`): a decode step's one token per row is a select over
    the buffer, which XLA:CPU runs in place in bf16 (SmolLM2-135M bf16 sampling at batch 32:
    57 against 66 ms a step for the scatter of the bits, 76 for the fp32 round trip); longer
    writes scatter the bits."""
    new = new.astype(c.dtype)
    at = _slot_index(rows, positions, slots_last=slots_last)
    if not xla_cpu_16bit(c.dtype):
        return c.at[at].set(new, mode="drop")
    if positions.shape[1] == 1:
        slots = c.shape[3 if slots_last else 2]
        hit = (jnp.arange(slots)[None, :] == positions)[:, None, None, :]  # [B, 1, 1, S]
        if slots_last:
            return jnp.where(hit, new[:, 0, :, :, None], c)
        return jnp.where(hit.swapaxes(2, 3), new[:, 0, :, None, :], c)
    return from_bits(to_bits(c).at[at].set(to_bits(new), mode="drop"), c.dtype)


def _slot_index(rows: Int[Array, "B T"], positions: Int[Array, "B T"], *, slots_last: bool
                ) -> tuple:
    """The index of slot positions[b, t] of row rows[b, t] in a layer's [B, K, H, S]
    (`slots_last`) or [B, K, S, H] cache block: advanced indices around the K (and H) slices, so
    the indexed elements are [B, T, K, H] in either layout."""
    return (rows, slice(None), *((slice(None),) if slots_last else ()), positions)


def output_logits(cfg: ModelConfig, params: dict[str, Array], x: Float[Array, "*B D"], dtype
                  ) -> Float[Array, "*B V"]:
    """fp32 logits of final-normed hidden states (the tied embedding or the LM head), soft-capped
    where the config says (Gemma 2). Every consumer of logits (sampler, loss) goes through here."""
    head = params["embed"] if cfg.tie_word_embeddings else params["lm_head"]  # [V, D]: out, in
    logits = matmul_out_in(x, head.astype(dtype), 1, jnp.float32)
    return softcap(logits, cfg.final_logit_softcap)
