"""Shared fixtures for tests and benchmarks: tiny tokenizers, the shapes of a tiny model of
every supported family, random checkpoints written by s2jax, and GGUF files.

Torch-free, as all of s2jax: checkpoints written by `transformers` itself (the parity tests'
reference) are made in tests/hf_fixtures.py from the `FAMILIES` here. Import the submodules
(`s2jax.testing.tokenizers`, `.checkpoints`, `.gguf_files`); nothing is re-exported, so that a
test needing a tokenizer does not import JAX.
"""
