"""Tiny random checkpoints of every supported family written by `transformers` (the parity
tests' reference), and the reference model of a checkpoint. The families' shapes are
`s2jax.testing.checkpoints.FAMILIES`; torch stays here, out of s2jax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2jax.testing.checkpoints import BASE, FAMILIES
from s2jax.testing.tokenizers import tiny_tokenizer


def make_hf_checkpoint(directory: Path, family: str, seed: int = 0, tokenizer=None,
                       weight_std: float | None = 0.15, **overrides) -> Path:
    """Writes a random `family` model + tokenizer (default `tiny_tokenizer`) with `transformers`;
    returns the directory. Weights other than norms and biases are N(0, `weight_std`), or as
    `transformers` initialises them (N(0, initializer_range)) when it is None."""
    # torch only when a checkpoint is made: conftest imports this module in every session
    import torch
    import transformers

    cls_name, extra = FAMILIES[family]
    config = getattr(transformers, cls_name)(**{**BASE, **extra, **overrides})
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
    import torch  # only when a reference is built (see make_hf_checkpoint)
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def ragged_batch(vocab: int, lengths=(11, 7, 3), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of random sequences of `lengths` tokens, right-padded with 0."""
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = rng.integers(8, vocab, size=(len(lengths), T)).astype(np.int32)
    mask = (np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.int32)
    return np.where(mask, ids, 0), mask


def reference_logits(directory: Path, ids: np.ndarray, mask: np.ndarray, positions=None
                     ) -> np.ndarray:
    """The `transformers` model's fp32 logits of a checkpoint dir on (ids, mask)."""
    import torch  # only when a reference is built (see make_hf_checkpoint)

    ref = load_reference(directory)
    kwargs = {} if positions is None else {"position_ids": torch.tensor(positions)}
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(ids, dtype=torch.long),
                  attention_mask=torch.tensor(mask), **kwargs)
    return out.logits.float().numpy()
