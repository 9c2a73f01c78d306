"""s2jax: System 2 distillation of language models in JAX/Flax.

Shape convention, everywhere in the package: einsum letters in jaxtyping annotations and in
einsum strings. B batch, T query tokens, S key/cache slots, D model dim, F MLP dim,
N query heads, K KV heads, G = N / K query heads per KV head, H head dim, V vocab, L layers.

Packages by concern, each importing only from those before it: core (plumbing), parallel
(meshes, processes), models, sampling and train, methods / tasks / distill (the System 2
distillation domain) and report (statistics of runs' per-item rows, no JAX), run (stages, their
sequence, configs, the planner), toy (the shipped toy world's demo and recipe), commands and cli;
testing (shared fixtures for tests and benchmarks) sits on top.
"""

from __future__ import annotations

from s2jax.core import host_memory

__version__ = "0.1.0"

# before JAX or anything else starts threads: glibc fixes its arena limit at a second thread's
# first allocation (see host_memory)
host_memory.configure()

__all__ = ["load", "load_config", "load_weights", "save"]


def __getattr__(name: str):
    # `import s2jax` must not import JAX: commands that fail on their arguments exit at once
    if name in __all__:
        # lazy: `import s2jax` must not import JAX (the loaders do)
        from s2jax.models import loading

        return getattr(loading, name)
    raise AttributeError(f"module 's2jax' has no attribute {name!r}")
