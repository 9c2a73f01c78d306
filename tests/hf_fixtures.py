"""Tiny random checkpoints of every supported family, written by `transformers` (the reference).

Shapes are chosen to exercise what differs between families: GQA, a head_dim that is not
hidden/heads, tied and untied embeddings, rope scaling, sliding windows, q/k/v biases, q/k norms,
Gemma's attention scale, soft-capping and per-layer-type rope.
"""

from __future__ import annotations

from pathlib import Path

from s2jax.models.tokenizer import train_bpe_tokenizer

VOCAB = 320
_BASE = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
             rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=7, pad_token_id=0)

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

TEXTS = [
    "The quick brown fox jumps over the lazy dog. A coin is heads up. Alice flips the coin.",
    "Take the last letters of each word in 'Elon Musk Larry Page' and concatenate them.",
    "Q: What is 12 + 30? A: Let's think step by step. 12 + 30 = 42. The answer is 42.",
] * 4


# Gemma's chat template (roles user/model, each turn closed by <end_of_turn>), BOS from the template
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def tiny_tokenizer(vocab_size: int = VOCAB):
    return train_bpe_tokenizer(TEXTS, vocab_size=vocab_size)


def gemma_tokenizer(vocab_size: int = VOCAB):
    """A tiny tokenizer that behaves like Gemma's: every encoding starts with BOS (a
    post-processor, as in Gemma's tokenizer.json), and its chat turns end with <end_of_turn>,
    which is not its EOS token."""
    from tokenizers import processors

    tok = train_bpe_tokenizer(TEXTS, vocab_size=vocab_size - 2, chat_template=GEMMA_CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    return tok


def make_hf_checkpoint(directory: Path, family: str, seed: int = 0, tokenizer=None,
                       weight_std: float | None = 0.15, **overrides) -> Path:
    """Writes a random `family` model + tokenizer (default `tiny_tokenizer`) with `transformers`;
    returns the directory. Weights other than norms and biases are N(0, `weight_std`), or as
    `transformers` initialises them (N(0, initializer_range)) when it is None."""
    import torch
    import transformers

    cls_name, extra = FAMILIES[family]
    config = getattr(transformers, cls_name)(**{**_BASE, **extra, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    unit = 0.0 if cls_name.startswith("Gemma") else 1.0  # Gemma's norms scale by (1 + w)
    with torch.no_grad():  # larger-than-init weights so that parity is not trivially met
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(unit + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif weight_std is not None:
                p.copy_(weight_std * torch.randn_like(p))
    model.save_pretrained(directory, safe_serialization=True)
    (tokenizer or tiny_tokenizer(config.vocab_size)).save_pretrained(directory)
    return Path(directory)


def load_reference(directory: Path):
    """The `transformers` model of a checkpoint dir, fp32, eager attention, eval mode."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, attn_implementation="eager", dtype=torch.float32)
    return model.eval()
