"""Supervised fine-tuning: `finetune(model, tokenizer, examples, TrainConfig(...), run_dir)`.

Files: config (TrainConfig), data (tokenize, mask, pack, resumable batches), optim (AdamW +
schedule), state (sharded train state), step (jitted train/eval steps), checkpoint (orbax),
metrics (JSONL + TensorBoard), loop (the driver).
"""

from s2jax.train.config import TrainConfig
from s2jax.train.data import TokenizedExample, read_examples, tokenize_chat


def __getattr__(name: str):
    # `finetune` pulls in JAX; importing it lazily keeps `s2jax --help` and config use fast.
    if name == "finetune":
        # lazy: the configs import cheaply; the loop imports JAX, optax, orbax
        from s2jax.train.loop import finetune

        return finetune
    raise AttributeError(f"module 's2jax.train' has no attribute {name!r}")

__all__ = ["TokenizedExample", "TrainConfig", "finetune", "read_examples", "tokenize_chat"]
