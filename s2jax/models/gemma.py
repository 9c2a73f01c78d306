"""Gemma 2 and Gemma 3 (text): the decoder block and RMSNorm, as `transformers` computes them.

Everything else is shared with the other families: `transformer.param_specs` describes the
weights (HF's `post_attention_layernorm` is the norm *after* attention here, and the pre-MLP norm
is `pre_feedforward_layernorm`); `transformer.forward` embeds (times sqrt(D)), masks, applies
rope (Gemma 3: a base per layer type), the KV cache and attention (scaled by
`query_pre_attn_scalar`^-1/2, Gemma 2's scores soft-capped), and `transformer.output_logits`
soft-caps the final logits (Gemma 2).

What differs from the Llama block:
- RMSNorm scales by (1 + w) and multiplies in fp32 before casting back (Llama casts, then
  multiplies);
- "sandwich" norms: after attention and after the MLP as well as before them;
- the MLP gate is GELU with the tanh approximation;
- Gemma 3 RMS-normalises q and k per head with the same (1 + w) norm, before rope.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from s2jax.models.config import ModelConfig
from s2jax.models.projection import project


def rms_norm(x: Float[Array, "... X"], w: Float[Array, " X"], eps: float) -> Float[Array, "... X"]:
    """Gemma's RMSNorm: x / rms(x) * (1 + w), all in fp32, cast back to x's dtype at the end."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * (1.0 + w.astype(jnp.float32))).astype(x.dtype)


def block(cfg: ModelConfig, lp: dict[str, Array], x: Float[Array, "B T D"], attend: Callable,
          dtype) -> Float[Array, "B T D"]:
    """One Gemma layer: x + norm(attention(norm(x))), then x + norm(GELU-gated MLP(norm(x)))."""
    eps = cfg.rms_norm_eps
    h = rms_norm(x, lp["attn_norm"], eps)
    q = project(lp, "q", "btd,dnh->btnh", h, dtype)
    k = project(lp, "k", "btd,dkh->btkh", h, dtype)
    v = project(lp, "v", "btd,dkh->btkh", h, dtype)
    if cfg.qk_norm:
        q, k = rms_norm(q, lp["q_norm"], eps), rms_norm(k, lp["k_norm"], eps)
    a = project(lp, "o", "btnh,nhd->btd", attend(q, k, v), dtype)
    x = x + rms_norm(a, lp["post_attn_norm"], eps)
    h = rms_norm(x, lp["mlp_norm"], eps)
    g = project(lp, "gate", "btd,df->btf", h, dtype)
    u = project(lp, "up", "btd,df->btf", h, dtype)
    m = project(lp, "down", "btf,fd->btd", jax.nn.gelu(g, approximate=True) * u, dtype)
    return x + rms_norm(m, lp["post_mlp_norm"], eps)
