"""The sampling engine: prefill and decode over an explicit KV cache, continuous batching.

`Sampler(model, tokenizer)` implements `s2jax.core.text_generator.TextGenerator`.
"""

from s2jax.sampling.buckets import BucketPlan, plan_programs
from s2jax.sampling.engine import Sampler, eos_token_ids
from s2jax.sampling.token_rules import SamplingMethod

__all__ = ["BucketPlan", "Sampler", "SamplingMethod", "eos_token_ids", "plan_programs"]
