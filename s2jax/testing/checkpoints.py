"""Tiny models: the HF config of a small model of every supported family (what differs between
families, at shapes that compile in seconds), and random checkpoints written by s2jax."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from s2jax.models.config import ModelConfig
from s2jax.models.loading import save
from s2jax.models.module import Transformer
from s2jax.testing.tokenizers import VOCAB, tiny_tokenizer

# HF config fields every tiny family shares
BASE: dict = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=7, pad_token_id=0)

# family -> (its transformers config class, its fields over BASE). The shapes exercise what
# differs: GQA, a head_dim that is not hidden/heads, tied and untied embeddings, rope scaling,
# sliding windows, q/k/v biases, q/k norms, Gemma's attention scale, soft-capping and
# per-layer-type rope.
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama2": ("LlamaConfig", dict(num_key_value_heads=4, tie_word_embeddings=False)),
    "llama3": ("LlamaConfig", dict(
        head_dim=16, tie_word_embeddings=True, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=16))),
    "llama_linear": ("LlamaConfig", dict(rope_scaling=dict(rope_type="linear", factor=2.0))),
    "mistral": ("MistralConfig", dict(sliding_window=None, head_dim=16)),
    "mistral_window": ("MistralConfig", dict(sliding_window=5)),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True)),
    "qwen2_window": ("Qwen2Config", dict(num_hidden_layers=3, use_sliding_window=True,
                                         sliding_window=4, max_window_layers=1)),
    "qwen3": ("Qwen3Config", dict(head_dim=16, tie_word_embeddings=False)),
    # layer 0 local (window 4), layer 1 global; strong soft-caps so that they matter
    "gemma2": ("Gemma2Config", dict(head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
                                    attn_logit_softcapping=2.0, final_logit_softcapping=5.0)),
    # local, global, local; the global rope linearly scaled, the local one on its own base
    "gemma3": ("Gemma3TextConfig", dict(
        num_hidden_layers=3, head_dim=16, query_pre_attn_scalar=20, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": dict(rope_type="linear", factor=4.0, rope_theta=1e4),
                         "sliding_attention": dict(rope_type="default", rope_theta=100.0)})),
}


def llama_config(vocab_size: int, hidden_size: int, intermediate_size: int, num_layers: int,
                 num_heads: int, num_kv_heads: int, head_dim: int | None = None,
                 **fields) -> ModelConfig:
    """A Llama `ModelConfig` of these shapes (`fields`: any other ModelConfig field)."""
    return ModelConfig(architecture="LlamaForCausalLM", vocab_size=vocab_size,
                       hidden_size=hidden_size, intermediate_size=intermediate_size,
                       num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
                       head_dim=head_dim or hidden_size // num_heads, **fields)


def random_model(cfg: ModelConfig, *, seed: int = 0, param_dtype="float32") -> Transformer:
    """The s2jax model of `cfg` with its random init (N(0, 0.02) weights, identity norms)."""
    return Transformer(cfg, rngs=nnx.Rngs(seed), param_dtype=param_dtype)


def random_checkpoint(directory: str | Path, cfg: ModelConfig, *, seed: int = 0,
                      tokenizer=None) -> Path:
    """Writes `random_model(cfg)` and `tokenizer` (default: `tiny_tokenizer` of the model's
    vocabulary) as an HF checkpoint directory, with s2jax's own export; returns the path."""
    save(random_model(cfg, seed=seed), tokenizer or tiny_tokenizer(cfg.vocab_size), directory)
    return Path(directory)
