"""What the benchmarks share: the random Llama checkpoints both sides of a comparison load
(written by `transformers`, the reference), and s2jax models of HF-style shapes.

Run a benchmark from a checkout (`python bench/x.py`): each puts the checkout on sys.path before
importing this module.
"""

from __future__ import annotations

import json
from pathlib import Path

from s2jax.models.module import Transformer
from s2jax.testing.checkpoints import llama_config, random_model
from s2jax.testing.tokenizers import word_tokenizer


def hf_llama_checkpoint(directory: Path, overrides: dict, eos_fraction: float = 0.0
                        ) -> tuple[list[int], int]:
    """Writes a random `transformers` Llama (its init, seed 0; `overrides`: LlamaConfig fields)
    with a word-level tokenizer, declaring the first `eos_fraction` of ids after 3 as EOS
    ([] = no EOS, so every row makes all its tokens); returns (the EOS ids, parameters)."""
    import torch  # only the benchmarks with a torch side get here
    import transformers

    config = transformers.LlamaConfig(**{"max_position_embeddings": 1024, "bos_token_id": 2,
                                         "pad_token_id": 0, "tie_word_embeddings": False,
                                         **overrides})
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    V = config.vocab_size
    eos = list(range(3, 3 + int(V * eos_fraction)))
    model.generation_config.eos_token_id = eos or None
    model.save_pretrained(directory, safe_serialization=True)
    gen = json.loads((directory / "generation_config.json").read_text())
    gen["eos_token_id"] = eos  # [] = no EOS (transformers drops a None)
    (directory / "generation_config.json").write_text(json.dumps(gen))
    word_tokenizer(V).save_pretrained(directory)
    return eos, sum(p.numel() for p in model.parameters())


def s2jax_llama(shapes: dict, **fields) -> Transformer:
    """A random s2jax Llama of HF-style `shapes` (vocab_size, hidden_size, ...)."""
    return random_model(llama_config(
        shapes["vocab_size"], shapes["hidden_size"], shapes["intermediate_size"],
        shapes["num_hidden_layers"], shapes["num_attention_heads"],
        shapes["num_key_value_heads"], rms_norm_eps=1e-6,
        tie_word_embeddings=shapes.get("tie_word_embeddings", False), **fields))
