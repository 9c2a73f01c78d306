"""Rotary position embedding: its HF parameters, its inverse frequencies, and applying it.

Every family's config parsing reads rope through `parse_rope`; the inverse frequencies are
computed in numpy (at trace time, as constants), their cos and sin at the tokens' positions
are `rope_table` (once per forward), rotating q and k is `apply_rope`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from s2jax.core.errors import S2JaxError
from s2jax.models.config_fields import Fields

ROPE_TYPES = ("default", "llama3", "linear")
# the fields each rope type needs besides its theta
_NEEDS = {"linear": ("factor",),
          "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                     "original_max_position_embeddings")}


def parse_rope(hf: dict, source: str) -> dict:
    """The rope of an HF config dict: {rope_type, rope_theta, scaling fields...}, each number
    checked (`s2jax.models.config_fields`).

    transformers 5 writes `rope_parameters` (theta inside); 4.x writes rope_theta + rope_scaling.
    """
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise S2JaxError(f"{source}: field 'rope_scaling' (or 'rope_parameters') is "
                         f"{rope!r:.60}; expected an object")
    rope = dict(rope)
    rope.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.pop("type", None) or rope.get("rope_type") or "default"
    rope["rope_type"] = rope_type
    if rope_type not in ROPE_TYPES:
        raise S2JaxError(
            f"{source}: field 'rope_scaling' has rope_type {rope_type!r:.60}, which s2jax does "
            f"not implement (expected one of {', '.join(ROPE_TYPES)})"
        )
    f = Fields(rope, f"{source}: rope parameters")
    for key in _NEEDS.get(rope_type, ()):
        if key not in rope:
            raise S2JaxError(f"{source}: rope_type {rope_type!r} needs field {key!r}")
        rope[key] = f.float(key)
    if rope_type == "llama3" and rope["low_freq_factor"] == rope["high_freq_factor"]:
        raise S2JaxError(f"{source}: rope low_freq_factor equals high_freq_factor "
                         f"({rope['low_freq_factor']}); expected two different factors")
    if rope_type == "default":
        rope = {"rope_type": "default", "rope_theta": rope["rope_theta"]}
    rope["rope_theta"] = Fields(rope, f"{source}: rope parameters").float("rope_theta")
    return rope


def default_inv_freq(theta: float, head_dim: int) -> np.ndarray:
    """1 / theta^(2i/H) in fp32, rounded step by step as torch computes it (the power rounded to
    fp32, then an fp32 reciprocal). One ulp matters: at position p the angle p * inv_freq moves
    by p ulps, 6e-5 rad at p = 500, and logits with it by up to 1e-3."""
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return np.float32(1.0) / (theta ** exponent.astype(np.float64)).astype(np.float32)


def inv_freq(theta: float, head_dim: int, rope_type: str, scaling: dict[str, float]
             ) -> np.ndarray:
    """Inverse frequencies [H/2] with the rope type's scaling, as HF computes them."""
    inv = default_inv_freq(theta, head_dim)
    if rope_type == "linear":
        inv = inv / scaling["factor"]
    elif rope_type == "llama3":
        factor, lo, hi = (scaling["factor"], scaling["low_freq_factor"],
                          scaling["high_freq_factor"])
        old_ctx = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        low_wavelen, high_wavelen = old_ctx / lo, old_ctx / hi
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)


def rope_table(positions: Int[Array, "B T"], inv_freq: Float[Array, " H2"]
               ) -> tuple[Float[Array, "B T 1 H2"], Float[Array, "B T 1 H2"]]:
    """(cos, sin) of the rotation angles positions x inv_freq, in fp32, for `apply_rope`.

    A forward computes them once per distinct inverse-frequency row and every layer reuses them:
    computed inside each layer, XLA fuses the sin and cos into the rotation of q and of k and
    evaluates them once per element of those, every head and both halves (a seventh of a
    SmolLM2-135M prefill on XLA:CPU)."""
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
    return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]


def apply_rope(x: Float[Array, "B T N H"], table: tuple[Array, Array]) -> Float[Array, "B T N H"]:
    """Rotary embedding in the `rotate_half` convention of HF Llama, by a `rope_table`."""
    cos, sin = table
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
