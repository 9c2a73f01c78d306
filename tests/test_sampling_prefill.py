"""Chunked prefill: the same cache, last hidden states and tokens as one pass over the prompt."""

import jax.numpy as jnp
import numpy as np
import pytest

import s2jax
from s2jax.core.text_generator import SamplingParams
from s2jax.sampling import Sampler
from s2jax.sampling.loop import prefill_cache


@pytest.mark.parametrize("family", ["llama2", "mistral_window"])
def test_chunked_prefill_equals_one_pass(hf_checkpoint, family):
    """Prompts of 5..61 tokens in 64 slots, fed 16 at a time (windows of 5 tokens crossing
    chunk edges for mistral_window): cache and last hidden state as in one pass."""
    model, _ = s2jax.load(hf_checkpoint(family), dtype="float32")
    cfg, params = model.config, model.params()
    lengths = np.array([61, 5, 16, 33], np.int32)
    rng = np.random.default_rng(0)
    tokens = np.zeros((4, 64), np.int32)
    for p, n in enumerate(lengths):
        tokens[p, :n] = rng.integers(8, cfg.vocab_size, size=n)
    one_last, one = prefill_cache(cfg, None, params, tokens, lengths, jnp.float32, chunk=64)
    last, cache = prefill_cache(cfg, None, params, tokens, lengths, jnp.float32, chunk=16)
    np.testing.assert_allclose(last, one_last, rtol=1e-5, atol=1e-5)
    for p, n in enumerate(lengths):  # slots past a prompt's end hold padding, never read
        np.testing.assert_allclose(cache.k[:, p, ..., :n], one.k[:, p, ..., :n], rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(cache.v[:, p, :, :n], one.v[:, p, :, :n], rtol=1e-5,
                                   atol=1e-5)


def test_chunked_prefill_samples_the_same_tokens(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    rng = np.random.default_rng(1)
    prompts = [rng.integers(8, model.config.vocab_size, size=n).tolist() for n in (40, 7, 23)]
    params = SamplingParams(n=2, temperature=1.0, top_k=20, max_new_tokens=8, seed=3)
    chunked = Sampler(model, tok, max_batch=8, max_len=128, prefill_chunk=16)
    whole = Sampler(model, tok, max_batch=8, max_len=128)
    assert chunked.generate_ids(prompts, params) == whole.generate_ids(prompts, params)


def test_a_chunk_that_does_not_divide_the_prompt_slots_takes_equal_passes(hf_checkpoint):
    """48 prompt slots (a 1.5x prompt bucket) with chunk 32: two passes of 24, the same cache
    and last hidden states as one pass."""
    model, _ = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    rng = np.random.default_rng(2)
    tokens = rng.integers(8, model.config.vocab_size, (2, 48)).astype(np.int32)
    lengths = np.array([48, 30], np.int32)
    args = (model.config, None, model.params(), tokens, lengths, jnp.float32)
    one_last, one = prefill_cache(*args, chunk=48)
    last, cache = prefill_cache(*args, chunk=32)
    np.testing.assert_allclose(last, one_last, rtol=1e-5, atol=1e-5)
    for p, n in enumerate(lengths):
        np.testing.assert_allclose(cache.k[:, p, ..., :n], one.k[:, p, ..., :n], rtol=1e-5,
                                   atol=1e-5)
