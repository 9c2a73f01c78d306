"""Llama 2/3, Mistral, Qwen2 and Qwen3: one block, and the switches that tell them apart.

Qwen2 adds biases to q, k and v (`qkv_bias`); Qwen3 RMS-normalises q and k per head before rope
(`qk_norm`); Mistral and Qwen may slide an attention window over some layers; Llama 3 scales its
rope. All of them are read from (and written to) HF `config.json` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from s2jax.core.errors import S2JaxError
from s2jax.models.config_fields import LAYER_TYPES, MAX_LAYERS, MAX_POSITIONS, Fields
from s2jax.models.family import Family, refuse_changed
from s2jax.models.projection import project
from s2jax.models.rope import parse_rope

if TYPE_CHECKING:
    from s2jax.models.config import ModelConfig


def rms_norm(x: Float[Array, "... X"], w: Float[Array, " X"], eps: float) -> Float[Array, "... X"]:
    """RMSNorm in fp32, scaled in the input dtype, as `transformers` computes it."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return w.astype(x.dtype) * y.astype(x.dtype)


def block(cfg: ModelConfig, lp: dict[str, Array], x: Float[Array, "B T D"], attend: Callable,
          dtype) -> Float[Array, "B T D"]:
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


def _windows(f: Fields, model_type: str, n_layers: int) -> tuple[int, ...]:
    window = f.opt_int("sliding_window", 0, MAX_POSITIONS) or 0
    if model_type == "mistral":
        return (window,) * n_layers
    if model_type in ("qwen2", "qwen3"):
        types = f.str_list("layer_types", LAYER_TYPES, n_layers)
        if not f.bool("use_sliding_window", False) or not window:
            return (0,) * n_layers
        full = f.int("max_window_layers", 0, MAX_LAYERS, n_layers)
        types = types or ["sliding_attention" if i >= full else "full_attention"
                          for i in range(n_layers)]
        return tuple(window if t == "sliding_attention" else 0 for t in types)
    return (0,) * n_layers


def read_hf(hf: dict, model_type: str, n_layers: int, source: str) -> tuple[dict, dict]:
    act = hf.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise S2JaxError(f"{source}: field 'hidden_act' is {act!r}; only 'silu' is implemented")
    refuse = {"attn_logit_softcapping": None, "final_logit_softcapping": None}
    if model_type != "qwen2":
        refuse["attention_bias"] = False  # Qwen2's q/k/v biases are built in, not this flag
    refuse_changed(hf, refuse, source)
    windows = _windows(Fields(hf, source), model_type, n_layers)
    return parse_rope(hf, source), {"sliding_windows": windows}


def write_hf(cfg: ModelConfig, rope: dict) -> dict:
    hf: dict = {"hidden_act": "silu"}
    windows = set(cfg.sliding_windows) - {0}
    if cfg.model_type == "llama":
        hf["mlp_bias"] = False
    if cfg.model_type in ("mistral", "qwen2", "qwen3"):
        hf["sliding_window"] = max(windows) if windows else None
    if cfg.model_type in ("qwen2", "qwen3"):
        hf["use_sliding_window"] = bool(windows)
        hf["layer_types"] = [
            "sliding_attention" if w else "full_attention" for w in cfg.sliding_windows
        ]
        n_full = next((i for i, w in enumerate(cfg.sliding_windows) if w), cfg.num_layers)
        hf["max_window_layers"] = n_full
    return hf


FAMILY = Family(
    architectures={
        "LlamaForCausalLM": ("llama", False, False),
        "MistralForCausalLM": ("mistral", False, False),
        "Qwen2ForCausalLM": ("qwen2", True, False),
        "Qwen3ForCausalLM": ("qwen3", False, True),
    },
    unsupported={},
    hf_defaults={},
    read_hf=read_hf,
    write_hf=write_hf,
    layer_norms={"attn_norm": "input_layernorm.weight",
                 "mlp_norm": "post_attention_layernorm.weight"},
    norm_init="ones",
    block=block,
    norm=rms_norm,
    scale_embeddings=False,
)
