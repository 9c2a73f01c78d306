"""The decoder: Llama 2/3, Mistral, Qwen2 and Qwen3 as switches of `ModelConfig`; Gemma 2/3.

Each weight is described once in `param_specs` (shape, logical axes, init, HF key and layout);
init, shardings, HF import and HF export all derive from that table. Layer weights are stacked
on a leading `layers` axis and the layers run under `lax.scan`, so a 80-layer model compiles
as fast as a 2-layer one.

`forward` is shared by every family (embedding, masks, KV cache, rope, attention, scan, output
logits); what a family changes is its `Family`: its decoder block and RMSNorm. A family whose
block diverges from the Llama one lives in a module of its own (`gemma.py`), and `family`
below is the one place that picks it.

Shapes use einsum letters (see `s2jax/__init__.py`): B batch, T query tokens, S key slots,
D model dim, F MLP dim, N query heads, K KV heads, G = N / K, H head dim, V vocab, L layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jaxtyping import Array, Float, Int

from s2jax.models import gemma
from s2jax.models.config import ModelConfig
from s2jax.models.projection import LORA_SCALE, project
from s2jax.parallel.sharding import logical_to_spec, named_sharding

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


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One weight: our layout, its logical axes, its init, and where it lives in an HF checkpoint.

    Our per-layer array equals the HF tensor reshaped to `hf_view` and transposed by `hf_perm`.
    Stacked weights (`stacked`) carry a leading L axis and an HF key with `{i}` for the layer.
    """

    shape: tuple[int, ...]
    axes: tuple[str | None, ...]
    init: Literal["normal", "ones", "zeros"]
    hf_key: str
    hf_shape: tuple[int, ...]  # one layer's HF tensor, for stacked weights
    hf_view: tuple[int, ...]
    hf_perm: tuple[int, ...]

    @property
    def stacked(self) -> bool:
        return "{i}" in self.hf_key

def param_specs(cfg: ModelConfig) -> dict[str, ParamSpec]:
    """The description of every weight of `cfg`, keyed by its dotted name in the module."""
    D, F, L, N, K, H, V = (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers,
                           cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size)
    lay = "model.layers.{i}."

    def linear_in(name, heads, n, hf):  # ours [L, D, n, H] <- HF [n*H, D]
        return name, ParamSpec((L, D, n, H), ("layers", "embed", heads, "head_dim"), "normal",
                               lay + hf, (n * H, D), (n, H, D), (2, 0, 1))

    def bias(name, heads, n, hf):  # ours [L, n, H] <- HF [n*H]
        return name, ParamSpec((L, n, H), ("layers", heads, "head_dim"), "zeros", lay + hf,
                               (n * H,), (n, H), (0, 1))

    # Gemma's norms scale by (1 + w): the same identity init is w = 0.
    unit = "zeros" if cfg.is_gemma else "ones"

    def norm(name, dim, hf, axis="norm"):
        return name, ParamSpec((L, dim), ("layers", axis), unit, lay + hf, (dim,), (dim,), (0,))

    def mlp(name, shape, axes, hf):  # HF [out, in] -> ours [in, out]
        hf_shape = (shape[1], shape[0])
        return name, ParamSpec((L, *shape), ("layers", *axes), "normal", lay + hf, hf_shape,
                               hf_shape, (1, 0))

    specs = dict([
        ("embed", ParamSpec((V, D), ("vocab", "embed"), "normal", "model.embed_tokens.weight",
                            (V, D), (V, D), (0, 1))),
        norm("layers.attn_norm", D, "input_layernorm.weight"),
        linear_in("layers.q", "heads", N, "self_attn.q_proj.weight"),
        linear_in("layers.k", "kv_heads", K, "self_attn.k_proj.weight"),
        linear_in("layers.v", "kv_heads", K, "self_attn.v_proj.weight"),
        ("layers.o", ParamSpec((L, N, H, D), ("layers", "heads", "head_dim", "embed"), "normal",
                               lay + "self_attn.o_proj.weight", (D, N * H), (D, N, H), (1, 2, 0))),
        norm("layers.mlp_norm", D, "post_attention_layernorm.weight"),
        mlp("layers.gate", (D, F), ("embed", "mlp"), "mlp.gate_proj.weight"),
        mlp("layers.up", (D, F), ("embed", "mlp"), "mlp.up_proj.weight"),
        mlp("layers.down", (F, D), ("mlp", "embed"), "mlp.down_proj.weight"),
        ("final_norm", ParamSpec((D,), ("norm",), unit, "model.norm.weight", (D,), (D,),
                                 (0,))),
    ])
    if cfg.is_gemma:  # norms after attention and the MLP too; HF names the pre-MLP one apart
        specs.update([norm("layers.mlp_norm", D, "pre_feedforward_layernorm.weight"),
                      norm("layers.post_attn_norm", D, "post_attention_layernorm.weight"),
                      norm("layers.post_mlp_norm", D, "post_feedforward_layernorm.weight")])
    if cfg.qkv_bias:
        specs.update([bias("layers.q_bias", "heads", N, "self_attn.q_proj.bias"),
                      bias("layers.k_bias", "kv_heads", K, "self_attn.k_proj.bias"),
                      bias("layers.v_bias", "kv_heads", K, "self_attn.v_proj.bias")])
    if cfg.qk_norm:
        specs.update([norm("layers.q_norm", H, "self_attn.q_norm.weight", "head_dim"),
                      norm("layers.k_norm", H, "self_attn.k_norm.weight", "head_dim")])
    if not cfg.tie_word_embeddings:
        # [V, D] like the embedding (and HF): one logits einsum for tied and untied heads, and
        # the loss's weight gradient is a plain [V, c] x [c, D] matmul, with no transposed copy
        # of the chunk's logit gradient ([D, V] made XLA:CPU transpose it; the step ran slower)
        specs["lm_head"] = ParamSpec((V, D), ("vocab", "embed"), "normal", "lm_head.weight",
                                     (V, D), (V, D), (0, 1))
    return specs


def split_layers(params: dict[str, Array]) -> dict[str, Array | tuple[Array, ...]]:
    """`params` with each stacked [L, ...] weight as a tuple of L arrays: `forward` over a split
    cache then reads every weight in place (one copy here, not one per layer per step)."""
    return {k: tuple(v[i] for i in range(v.shape[0])) if k.startswith("layers.") else v
            for k, v in params.items()}


def param_shardings(cfg: ModelConfig, mesh: Mesh) -> dict[str, NamedSharding]:
    """Each weight's sharding on `mesh`, from its logical axes in `param_specs`."""
    return {name: named_sharding(mesh, spec.axes, spec.shape)
            for name, spec in param_specs(cfg).items()}


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
        return self._map(lambda c, w, _: jax.lax.dynamic_update_slice(c, w, (0,) * c.ndim),
                         part)

    def with_rows(self, dest: Int[Array, " R"], prompts: KVCache, src: Int[Array, " R"]
                  ) -> KVCache:
        """This cache with rows `dest` (out of range: dropped) starting with the slots of rows
        `src` of the stacked cache `prompts`."""
        T = prompts.slots
        return self._map(lambda c, p, lead: c.at[(*lead, dest, slice(None), slice(None, T))]
                         .set(p[(*lead, src)], mode="drop"), prompts)

    @staticmethod
    def shape(cfg: ModelConfig, batch: int, max_len: int) -> tuple[int, ...]:
        return (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)

    AXES = ("layers", "batch", "kv_heads", "cache_seq", "head_dim")


def rms_norm(x: Float[Array, "... X"], w: Float[Array, " X"], eps: float) -> Float[Array, "... X"]:
    """RMSNorm in fp32, scaled in the input dtype, as `transformers` computes it."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return w.astype(x.dtype) * y.astype(x.dtype)


def rope(x: Float[Array, "B T N H"], positions: Int[Array, "B T"], inv_freq: np.ndarray
         ) -> Float[Array, "B T N H"]:
    """Rotary embedding in the `rotate_half` convention of HF Llama."""
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def softcap(x: Array, cap: float | None) -> Array:
    """cap * tanh(x / cap) (Gemma 2's soft-capping of attention scores and logits)."""
    return x if cap is None else jnp.tanh(x / cap) * cap


def attention(q: Float[Array, "B T N H"], k: Float[Array, "B K S H"], v: Float[Array, "B K S H"],
              mask: Float[Array, "B T S"], *, scale: float | None = None,
              logit_softcap: float | None = None) -> Float[Array, "B T N H"]:
    """Grouped-query attention with a boolean mask (True = attend); softmax in fp32.

    Scores are scaled by `scale` (default H^-1/2), then soft-capped when `logit_softcap` is set.

    Both products are plain batched matmuls over (B, K), with a KV head's G query heads and T
    tokens as the rows of one [G*T, H] matrix: XLA:CPU runs that form as one batched GEMM,
    where the [B, T, K, G, H] form made it emit a generic dot with a transposed operand for
    the P.V product (decode at SmolLM2 shapes: 1.0 -> 0.57 ms a layer; prefill 30% less).
    """
    B, T, N, H = q.shape
    K, S = k.shape[1], k.shape[2]
    G = N // K
    q = q.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, H)
    s = jnp.einsum("bkmh,bksh->bkms", q, k, preferred_element_type=jnp.float32)
    s = softcap(s * (H**-0.5 if scale is None else scale), logit_softcap).reshape(B, K, G, T, S)
    s = jnp.where(mask[:, None, None], s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype).reshape(B, K, G * T, S)
    o = jnp.einsum("bkms,bksh->bkmh", p, v)
    return o.reshape(B, K, G, T, H).transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)


def self_attention(q: Float[Array, "B T N H"], k: Float[Array, "B T K H"],
                   v: Float[Array, "B T K H"], mask: Float[Array, "B T T"], *,
                   scale: float | None = None, logit_softcap: float | None = None,
                   causal: bool = False,
                   implementation: Literal["cudnn", "xla"] | None = None
                   ) -> Float[Array, "B T N H"]:
    """Attention of a sequence over itself (no KV cache): the training path.

    `causal=True` promises that `mask` allows nothing above the diagonal (packing and sliding
    windows only take more away); cuDNN then skips those blocks, half of the work, which it
    cannot tell from an arbitrary mask.

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
        return attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask, scale=scale,
                         logit_softcap=logit_softcap)
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale,
                                        is_causal=causal, implementation=implementation)


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
) -> tuple[Float[Array, "B T V"], KVCache | None]:
    """Logits [B, T, V] in fp32 and, with a cache, the cache holding the new keys and values.

    `params` holds every weight of `param_specs`, and optionally LoRA adapters (`projection.py`).

    Without a cache, attention is causal over the T tokens, restricted to equal non-zero
    `segment_ids` when given (packing; 0 marks padding). With a cache, token t of row b is written
    to slot `positions[b, t]` and attends to slots <= its position: callers keep positions
    contiguous per row, so the cache has no holes and needs no per-slot mask.

    With a `mesh`, the residual stream is constrained to be split over the batch axes at every
    layer: without it XLA may gather the batch instead of the (fsdp-sharded) weights, and every
    device would compute every row.
    """
    dtype = dtype or params["embed"].dtype
    fam = family(cfg)
    B, T = tokens.shape
    if positions is None:
        positions = (segment_positions(segment_ids) if segment_ids is not None
                     else jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T)))
    def constrain(x):
        if mesh is None or mesh.size == 1:
            return x
        spec = logical_to_spec(("batch",) + (None,) * (x.ndim - 1), x.shape, mesh)
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    x = constrain(jnp.take(params["embed"], tokens, axis=0).astype(dtype))
    if fam.scale_embeddings:  # by sqrt(D) rounded to the compute dtype, as HF does
        x = x * jnp.asarray(cfg.hidden_size**0.5, dtype)

    if cache is None:
        k_pos = positions
        idx = jnp.arange(T)
        base_mask = jnp.broadcast_to(idx[None, :, None] >= idx[None, None, :], (B, T, T))
        if segment_ids is not None:
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            base_mask = base_mask & same & (segment_ids[:, None, :] != 0)
    else:
        S = cache.slots
        k_pos = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
        base_mask = k_pos[:, None, :] <= positions[:, :, None]
    rows = jnp.broadcast_to(jnp.arange(B)[:, None], (B, T))

    layer_params = {k[7:]: v for k, v in params.items() if k.startswith("layers.")}
    if LORA_SCALE in params:  # LoRA adapters' scale, the same for every layer's `project`
        layer_params[LORA_SCALE] = jnp.broadcast_to(params[LORA_SCALE], (cfg.num_layers,))
    windows = jnp.asarray(cfg.sliding_windows, jnp.int32)
    inv_freqs = jnp.asarray(cfg.rope_inv_freqs())  # [L, H/2]: Gemma 3's differ per layer

    def run_layer(x, lp, window, inv_freq, kv, write):
        """One layer; `write(kv, k, v) -> (kv, (keys, values))` stores this layer's new keys and
        values in the cache `kv` and returns what to attend over ([B, K, S, H] each)."""

        def attend(q, k, v):
            """This layer's attention of q [B,T,N,H] over k, v [B,T,K,H] (pre-rope): rotates
            them, writes k and v to the cache and reads it back, masks the window."""
            nonlocal kv
            q, k = rope(q, positions, inv_freq), rope(k, positions, inv_freq)
            if kv is not None:
                kv, (k, v) = write(kv, k, v)
                k, v = k.astype(dtype), v.astype(dtype)
            in_window = (positions[:, :, None] - k_pos[:, None, :]) < window
            mask = base_mask & ((window == 0) | in_window)
            if kv is None:  # no cache (training, scoring): k and v are still [B, T, K, H]
                return self_attention(q, k, v, mask, scale=cfg.attn_scale,
                                      logit_softcap=cfg.attn_logit_softcap, causal=True)
            return attention(q, k, v, mask, scale=cfg.attn_scale,
                             logit_softcap=cfg.attn_logit_softcap)

        return fam.block(cfg, lp, constrain(x), attend, dtype), kv

    if cache is not None and cache.per_layer:
        # per-layer buffers (`KVCache.split`), layers unrolled: attention reads each layer's
        # cache in place, where a scan would copy the layer's block out of the stacked cache
        # (and every weight out of the stacked weights) at every step, as XLA:CPU does
        def write_layer(kv, k, v):
            ck, cv = kv
            ck = ck.at[rows, :, positions].set(k.astype(ck.dtype), mode="drop")
            cv = cv.at[rows, :, positions].set(v.astype(cv.dtype), mode="drop")
            return (ck, cv), (ck, cv)

        ks, vs = list(cache.k), list(cache.v)
        for i in range(cfg.num_layers):
            lp = {name: w[i] for name, w in layer_params.items()}
            x, (ks[i], vs[i]) = run_layer(x, lp, cfg.sliding_windows[i], inv_freqs[i],
                                          (ks[i], vs[i]), write_layer)
        ck, cv = tuple(ks), tuple(vs)
    else:
        def layer(carry, xs):
            x, ck, cv = carry
            lp, window, inv_freq, i = xs

            def write_stacked(kv, k, v):
                # advanced indices (rows, positions) around the K slice: updates are [B,T,K,H]
                ck, cv = kv
                ck = ck.at[i, rows, :, positions].set(k.astype(ck.dtype), mode="drop")
                cv = cv.at[i, rows, :, positions].set(v.astype(cv.dtype), mode="drop")
                return (ck, cv), (ck[i], cv[i])

            kv = None if ck is None else (ck, cv)
            x, kv = run_layer(x, lp, window, inv_freq, kv, write_stacked)
            ck, cv = (None, None) if kv is None else kv
            return (x, ck, cv), None

        remat = resolve_remat(remat)
        if remat == "full":
            layer = jax.checkpoint(layer)
        elif remat == "dots":
            policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable
            layer = jax.checkpoint(layer, policy=policy)
        ck, cv = (None, None) if cache is None else (cache.k, cache.v)
        xs = (layer_params, windows, inv_freqs, jnp.arange(cfg.num_layers))
        (x, ck, cv), _ = jax.lax.scan(layer, (x, ck, cv), xs)
    x = fam.norm(x, params["final_norm"], cfg.rms_norm_eps)
    new_cache = None if cache is None else KVCache(ck, cv)
    if return_hidden:
        return x, new_cache
    return output_logits(cfg, params, x, dtype), new_cache


def output_logits(cfg: ModelConfig, params: dict[str, Array], x: Float[Array, "*B D"], dtype
                  ) -> Float[Array, "*B V"]:
    """fp32 logits of final-normed hidden states (the tied embedding or the LM head), soft-capped
    where the config says (Gemma 2). Every consumer of logits (sampler, loss) goes through here."""
    head = params["embed"] if cfg.tie_word_embeddings else params["lm_head"]
    logits = jnp.einsum("...d,vd->...v", x, head.astype(dtype), preferred_element_type=jnp.float32)
    return softcap(logits, cfg.final_logit_softcap)


def decoder_block(cfg: ModelConfig, lp: dict[str, Array], x: Float[Array, "B T D"],
                  attend: Callable, dtype) -> Float[Array, "B T D"]:
    """One Llama-style layer: x + attention(norm(x)), then x + SiLU-gated MLP(norm(x))."""
    h = rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)
    q = project(lp, "q", "btd,dnh->btnh", h, dtype)
    k = project(lp, "k", "btd,dkh->btkh", h, dtype)
    v = project(lp, "v", "btd,dkh->btkh", h, dtype)
    if cfg.qkv_bias:
        q, k, v = (q + lp["q_bias"].astype(dtype), k + lp["k_bias"].astype(dtype),
                   v + lp["v_bias"].astype(dtype))
    if cfg.qk_norm:
        q = rms_norm(q, lp["q_norm"], cfg.rms_norm_eps)
        k = rms_norm(k, lp["k_norm"], cfg.rms_norm_eps)
    a = attend(q, k, v)
    x = x + project(lp, "o", "btnh,nhd->btd", a, dtype)
    h = rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
    g = project(lp, "gate", "btd,df->btf", h, dtype)
    u = project(lp, "up", "btd,df->btf", h, dtype)
    return x + project(lp, "down", "btf,fd->btd", jax.nn.silu(g) * u, dtype)


@dataclasses.dataclass(frozen=True)
class Family:
    """What a model family changes in `forward`.

    `block(cfg, lp, x, attend, dtype) -> x` is one decoder layer over this layer's weights `lp`;
    it calls `attend(q, k, v)` (rope, KV cache, window mask, attention) between its projections.
    `norm(x, w, eps)` is the family's RMSNorm, also applied after the last layer.
    """

    block: Callable[..., Array]
    norm: Callable[..., Array]
    scale_embeddings: bool  # embeddings times sqrt(D)


LLAMA = Family(decoder_block, rms_norm, scale_embeddings=False)
GEMMA = Family(gemma.block, gemma.rms_norm, scale_embeddings=True)


def family(cfg: ModelConfig) -> Family:
    """The family of `cfg`: a new family with its own block adds its module and a line here."""
    return GEMMA if cfg.is_gemma else LLAMA


def init_value(spec: ParamSpec, key: jax.Array, dtype) -> jax.Array:
    if spec.init == "ones":
        return jnp.ones(spec.shape, dtype)
    if spec.init == "zeros":
        return jnp.zeros(spec.shape, dtype)
    return (0.02 * jax.random.normal(key, spec.shape, jnp.float32)).astype(dtype)
