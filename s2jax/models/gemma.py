"""Gemma 2 and Gemma 3 (text): everything that sets them apart from the Llama family.

Read from `config.json` here: transformers' defaults for omitted fields, the attention scale
(`query_pre_attn_scalar`), Gemma 2's soft-capping of scores and logits, per-layer-type windows
and Gemma 3's rope (a base per layer type), and written back for transformers 4.x and 5.x. The
weight table (`params.param_specs`) takes this family's norm names: HF's
`post_attention_layernorm` is the norm *after* attention here and the pre-MLP norm is
`pre_feedforward_layernorm`. `forward` embeds (times sqrt(D)), applies rope, the KV cache and
attention with what is read here; `output_logits` soft-caps the final logits (Gemma 2).

What differs from the Llama block:
- RMSNorm scales by (1 + w) and multiplies in fp32 before casting back (Llama casts, then
  multiplies);
- "sandwich" norms: after attention and after the MLP as well as before them;
- the MLP gate is GELU with the tanh approximation;
- Gemma 3 RMS-normalises q and k per head with the same (1 + w) norm, before rope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from s2jax.core.errors import S2JaxError
from s2jax.models.config_fields import LAYER_TYPES, MAX_DIM, MAX_LAYERS, MAX_POSITIONS, Fields
from s2jax.models.family import Family, refuse_changed
from s2jax.models.projection import project
from s2jax.models.rope import parse_rope

if TYPE_CHECKING:
    from s2jax.models.config import ModelConfig
    from s2jax.models.weights import Weights

# transformers' defaults (Gemma2Config, Gemma3TextConfig) for fields a config.json may omit,
# where they differ from the Llama-style defaults `ModelConfig.from_hf` assumes
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma2": dict(tie_word_embeddings=True, head_dim=256, query_pre_attn_scalar=256,
                   sliding_window=4096, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0, max_position_embeddings=8192),
    "gemma3_text": dict(tie_word_embeddings=True, head_dim=256, query_pre_attn_scalar=256,
                        sliding_window=4096, max_position_embeddings=131072),
}
_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_python_tanh")  # both are GELU with tanh
# the chat template closes every turn with this token
END_OF_TURN = "<end_of_turn>"


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


def _gemma3_rope(hf: dict, source: str) -> tuple[dict, float]:
    """Gemma 3's global rope (with its scaling) and the rope base of its sliding-window layers.

    transformers 5 writes `rope_parameters` as one dict per layer type; 4.x writes the global
    rope as usual (`rope_theta`, `rope_scaling`) plus `rope_local_base_freq`. The defaults
    (1e6 global, 1e4 local) are `Gemma3TextConfig`'s.
    """
    params = hf.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise S2JaxError(f"{source}: field 'rope_parameters' is {params!r:.60}; expected an "
                         "object")
    if "full_attention" in params or "sliding_attention" in params:
        full, local = (params.get(k) or {} for k in ("full_attention", "sliding_attention"))
        if not (isinstance(full, dict) and isinstance(local, dict)):
            raise S2JaxError(f"{source}: field 'rope_parameters' per layer type: expected an "
                             "object for each of full_attention, sliding_attention")
        full, local = dict(full), dict(local)
    else:
        full = dict(params or hf.get("rope_scaling") or {})
        full.setdefault("rope_theta", hf.get("rope_theta", 1e6))
        local = {"rope_theta": hf.get("rope_local_base_freq", 1e4)}
    full.setdefault("rope_theta", 1e6)
    if (local.get("rope_type") or local.get("type") or "default") != "default":
        raise S2JaxError(f"{source}: field 'rope_parameters.sliding_attention' has rope_type "
                         f"{local.get('rope_type') or local.get('type')!r}; s2jax implements "
                         "only 'default' rope for Gemma 3's sliding-window layers")
    local_theta = Fields(local, f"{source}: sliding-window rope").float("rope_theta", 1e4)
    return parse_rope({"rope_parameters": full}, source), local_theta


def _windows(f: Fields, model_type: str, n_layers: int) -> tuple[int, ...]:
    """Per-layer windows from `layer_types`, else from the older `sliding_window_pattern`
    (every pattern-th layer is global: Gemma 2 alternates, Gemma 3 has 5 local : 1 global)."""
    window = f.opt_int("sliding_window", 0, MAX_POSITIONS) or 0
    key = "_sliding_window_pattern" if "sliding_window_pattern" not in f.hf else \
        "sliding_window_pattern"
    pattern = f.opt_int(key, 1, MAX_LAYERS) or (2 if model_type == "gemma2" else 6)
    types = f.str_list("layer_types", LAYER_TYPES, n_layers) or [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    return tuple(window if t == "sliding_attention" else 0 for t in types)


def read_hf(hf: dict, model_type: str, n_layers: int, source: str) -> tuple[dict, dict]:
    """Gemma's rope and fields, each checked (`s2jax.models.config_fields`). Gemma 3 applies no
    attention soft-capping (transformers ignores `attn_logit_softcapping` there), so neither do
    we."""
    act = hf.get("hidden_activation") or "gelu_pytorch_tanh"
    if act not in _ACTIVATIONS:
        raise S2JaxError(f"{source}: field 'hidden_activation' is {act!r:.60}; only "
                         "'gelu_pytorch_tanh' is implemented for Gemma")
    refuse_changed(hf, {"attention_bias": False}, source)
    if model_type == "gemma3_text":
        rope, local_theta = _gemma3_rope(hf, source)
    else:
        rope, local_theta = parse_rope(hf, source), None
    f = Fields(hf, source)
    return rope, dict(
        sliding_windows=_windows(f, model_type, n_layers),
        query_pre_attn_scalar=f.int("query_pre_attn_scalar", 1, MAX_DIM),
        attn_logit_softcap=f.opt_float("attn_logit_softcapping") if model_type == "gemma2"
        else None,
        final_logit_softcap=f.opt_float("final_logit_softcapping"),
        local_rope_theta=local_theta,
    )


def write_hf(cfg: ModelConfig, rope: dict) -> dict[str, Any]:
    """The Gemma fields of `config.json`, readable by transformers 4.x and 5.x."""
    windows = set(cfg.sliding_windows) - {0}
    hf: dict[str, Any] = {
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "attn_logit_softcapping": cfg.attn_logit_softcap,
        "final_logit_softcapping": cfg.final_logit_softcap,
        "sliding_window": max(windows) if windows else None,
        "layer_types": ["sliding_attention" if w else "full_attention"
                        for w in cfg.sliding_windows],
        "use_bidirectional_attention": False,
    }
    if cfg.local_rope_theta is not None:
        local = {"rope_type": "default", "rope_theta": cfg.local_rope_theta}
        hf["rope_parameters"] = {"full_attention": rope, "sliding_attention": local}
        hf["rope_local_base_freq"] = cfg.local_rope_theta  # read by transformers 4.x
    return hf


def add_end_of_turn_eos(model: Weights, tokenizer) -> None:
    """Makes Gemma's `<end_of_turn>` an EOS of `model` where its checkpoint lists only `<eos>`
    (a no-op for other families and for tokenizers without the token).

    Gemma's chat template closes every turn with `<end_of_turn>`; instruction-tuned checkpoints
    list it as an EOS, base ones do not, and then a chat would run past its answer and SFT would
    train on the text after the turn. The id goes to the config and the generation config, so
    the sampler, the answer mask and the export all see it.
    """
    cfg = model.config
    eot = tokenizer.get_vocab().get(END_OF_TURN) if cfg.family is FAMILY else None
    if eot is None:
        return
    if eot not in cfg.eos_token_ids:
        model.config = dataclasses.replace(cfg, eos_token_ids=(*cfg.eos_token_ids, eot))
    gen = model.generation_config
    eos = gen.get("eos_token_id")
    eos = [] if eos is None else list(eos) if isinstance(eos, list) else [eos]
    if eos and eot not in eos:
        gen["eos_token_id"] = [*eos, eot]


FAMILY = Family(
    architectures={"Gemma2ForCausalLM": ("gemma2", False, False),
                   "Gemma3ForCausalLM": ("gemma3_text", False, True)},
    unsupported={
        "Gemma3ForConditionalGeneration": "multimodal Gemma 3 (vision tower) is not supported; "
                                          "only the text-only Gemma3ForCausalLM is",
        "Gemma3nForConditionalGeneration": "Gemma 3n is not supported",
        "Gemma3nForCausalLM": "Gemma 3n is not supported",
        "GemmaForCausalLM": "Gemma 1 is not supported "
                            "(Gemma2ForCausalLM and Gemma3ForCausalLM are)",
    },
    hf_defaults=HF_DEFAULTS,
    read_hf=read_hf,
    write_hf=write_hf,
    # norms after attention and the MLP too; HF names the pre-MLP one apart
    layer_norms={"attn_norm": "input_layernorm.weight",
                 "mlp_norm": "pre_feedforward_layernorm.weight",
                 "post_attn_norm": "post_attention_layernorm.weight",
                 "post_mlp_norm": "post_feedforward_layernorm.weight"},
    norm_init="zeros",  # the norms scale by (1 + w): the identity is w = 0
    block=block,
    norm=rms_norm,
    scale_embeddings=True,
)
