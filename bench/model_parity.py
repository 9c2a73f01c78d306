"""Logit parity of s2jax with `transformers` (torch, CPU) for every supported family, and bf16.

    python bench/model_parity.py

Prints, per tiny random checkpoint of `tests/hf_fixtures.FAMILIES`, the max |logit difference|
against the reference on valid positions of a ragged batch, and for llama3 the bf16 forward's
relative difference from fp32 and its argmax agreement. The tests assert the bounds; this
prints the measured figures.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import s2jax  # noqa: E402
from s2jax.testing.checkpoints import FAMILIES  # noqa: E402
from tests.hf_fixtures import make_hf_checkpoint, ragged_batch, reference_logits  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for family in sorted(FAMILIES):
            path = make_hf_checkpoint(Path(tmp) / family, family)
            model, _ = s2jax.load(path, dtype="float32")
            ids, mask = ragged_batch(model.config.vocab_size)
            ours = np.asarray(model(jnp.asarray(ids)))
            ref = reference_logits(path, ids, mask)
            valid = mask.astype(bool)
            line = (f"{family:15s} max|diff| {np.abs(ours - ref)[valid].max():.2e}  "
                    f"max|logit| {np.abs(ref[valid]).max():.1f}")
            if family == "llama3":
                bf16, _ = s2jax.load(path, dtype="bfloat16")
                low = np.asarray(bf16(jnp.asarray(ids)))
                rel = np.abs(low - ours)[valid].max() / np.abs(ours[valid]).max()
                agree = (low.argmax(-1) == ours.argmax(-1))[valid].mean()
                line += f"  bf16: rel diff {rel:.2e}, argmax agreement {agree:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
