"""s2jax.testing: the shared fixtures are what they say."""

import numpy as np

import s2jax
from s2jax.models.config import ModelConfig
from s2jax.testing.checkpoints import BASE, FAMILIES, llama_config, random_checkpoint, random_model
from s2jax.testing.tokenizers import word_tokenizer


def test_random_checkpoint_holds_the_random_model(tmp_path):
    cfg = llama_config(64, 32, 48, 2, 4, 2, tie_word_embeddings=True)
    path = random_checkpoint(tmp_path / "m", cfg, seed=3, tokenizer=word_tokenizer(64))
    model, tokenizer = s2jax.load(path)
    assert model.config == cfg and len(tokenizer) == 64
    expected = random_model(cfg, seed=3).params()
    for name, value in model.params().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(expected[name]))


def test_every_family_reads_as_its_architecture():
    # the tiny families' HF fields make valid s2jax configs (transformers' defaults aside)
    archs = {"LlamaConfig": "LlamaForCausalLM", "MistralConfig": "MistralForCausalLM",
             "Qwen2Config": "Qwen2ForCausalLM", "Qwen3Config": "Qwen3ForCausalLM",
             "Gemma2Config": "Gemma2ForCausalLM", "Gemma3TextConfig": "Gemma3ForCausalLM"}
    for cls, extra in FAMILIES.values():
        hf = {"architectures": [archs[cls]], **BASE, **extra}
        assert ModelConfig.from_hf(hf).num_layers == hf["num_hidden_layers"]
