"""Model definitions and Hugging Face checkpoint import/export.

No re-exports here: importing a submodule that needs no JAX (`fetch`, `tokenizer`) must not import
JAX and Flax through this package (seconds on every CLI command). Import what you need from its
module, e.g. `from s2jax.models.module import Transformer`.
"""
