"""Loading and saving whole models: `s2jax.load`, `load_weights`, `load_config`, `save`.

`s2jax/__init__.py` re-exports these lazily, so `import s2jax` stays cheap.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from s2jax.core.digest import sampled_digest
from s2jax.models.config import ModelConfig
from s2jax.models.fetch import resolve
from s2jax.models.gemma import add_end_of_turn_eos
from s2jax.models.gguf import GGUFFile, find_gguf, hf_config, load_gguf
from s2jax.models.hf import read_checkpoint, save_model
from s2jax.models.tokenizer import load_tokenizer


def load(path: str | Path, *, dtype=None, mesh=None):
    """Loads a local HF checkpoint directory, a GGUF file, or a pinned real model by name.

    Args:
      path: directory with config.json, *.safetensors (or an index) and tokenizer files; a
        .gguf file or a directory holding one (config, tokenizer and chat template from its
        metadata; weights dequantized); or a name from `s2jax fetch-models --list`.
      dtype: weight dtype ("float32", "bfloat16", or a dtype); None keeps the checkpoint's
        (float32 for GGUF).
      mesh: a `jax.sharding.Mesh` with axes (data, fsdp, tensor); None uses one device.

    Returns:
      (model, tokenizer): `model(input_ids)` maps int32 [B, T] to float32 logits [B, T, V].
    """
    from s2jax.models.module import Transformer  # Flax: only `load` needs the module

    weights, tokenizer = load_weights(path, dtype=dtype, mesh=mesh)
    return Transformer.from_weights(weights), tokenizer


def load_weights(path: str | Path, *, dtype=None, mesh=None):
    """What `load` reads, without the Flax module around the weights: all that sampling needs.

    Takes `load`'s arguments. Returns (weights, tokenizer): an `s2jax.models.weights.Weights` (the
    config, `params()` and the generation config on the mesh), which a `Sampler` takes as its
    model, and the tokenizer. Flax is not imported (~0.7 s of a `s2jax generate` process).
    """
    path = resolve(path)
    gguf_file = find_gguf(path)
    if gguf_file is not None:
        weights, tokenizer = load_gguf(gguf_file, dtype=dtype, mesh=mesh)
        weights.source = str(gguf_file.resolve())
    else:
        weights = read_checkpoint(path, dtype=dtype, mesh=mesh)
        weights.source = str(path.resolve())
        tokenizer = load_tokenizer(path)
        add_end_of_turn_eos(weights, tokenizer)
    weights.identity = identity(path)
    return weights, tokenizer


def identity(path: str | Path) -> str:
    """A short digest that tells models apart: of the weight files and config.json (sampled,
    so it costs the same for any size; `s2jax.core.digest`). A fine-tuning run records its
    base's, and a resumed run must start from the same."""
    path = resolve(path)
    gguf_file = find_gguf(path)
    if gguf_file is not None:
        return sampled_digest([gguf_file])
    files = sorted(path.glob("*.safetensors")) + [path / "config.json"]
    return sampled_digest(f for f in files if f.is_file())


def load_config(path: str | Path):
    """The `ModelConfig` that `load(path)` builds, read without the weights.

    `path` is anything `load` takes (a checkpoint directory, a .gguf file or a directory holding
    one, a pinned real model's name) or a bare config.json, as `s2jax plan` reads model shapes.
    """
    path = resolve(path)
    gguf_file = find_gguf(path)
    if gguf_file is not None:
        return ModelConfig.from_hf(hf_config(GGUFFile(gguf_file)), source=str(gguf_file))
    return ModelConfig.from_file(path / "config.json" if path.is_dir() else path)


def save(model, tokenizer, path: str | Path, **kwargs) -> None:
    """Writes an HF checkpoint directory that `transformers` loads to the same logits.

    `path` must be new (or empty), or a model directory s2jax wrote that nobody changed since;
    anything else is refused with `S2JaxError` and left as it is (`s2jax.core.ownership`).
    """
    save_model(model, tokenizer, path, **kwargs)


def params_identity(params: dict) -> str:
    """`identity` for weights held in memory only (no files): a digest of 1024 evenly spaced
    elements of each weight, gathered in one program."""
    def sample(p):
        return {k: v.reshape(-1)[jnp.linspace(0, v.size - 1, min(v.size, 1024)).astype(jnp.int32)]
                for k, v in p.items()}

    h = hashlib.sha256()
    for name, values in sorted(jax.device_get(jax.jit(sample)(params)).items()):
        h.update(name.encode() + np.asarray(values, np.float32).tobytes())
    return h.hexdigest()[:16]
