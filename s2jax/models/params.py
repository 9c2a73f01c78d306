"""The weight table: each weight of a model described once (`ParamSpec`).

Init, shardings, HF import and export, LoRA targets and the parameter count all derive from
`param_specs`. Layer weights are stacked on a leading `layers` axis (the layers run under
`lax.scan`, so an 80-layer model compiles as fast as a 2-layer one).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jaxtyping import Array

from s2jax.models.config import ModelConfig
from s2jax.models.projection import OUT_IN
from s2jax.parallel.sharding import named_sharding


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One weight: our layout, its logical axes, its init, and where it lives in an HF checkpoint.

    Our per-layer array equals the HF tensor reshaped to `hf_view` and transposed by `hf_perm`.
    Stacked weights (`stacked`) carry a leading L axis and an HF key with `{i}` for the layer.
    """

    shape: tuple[int, ...]
    axes: tuple[str | None, ...]
    init: Literal["normal", "ones", "zeros"]
    hf_key: str
    hf_shape: tuple[int, ...]  # one layer's HF tensor, for stacked weights
    hf_view: tuple[int, ...]
    hf_perm: tuple[int, ...]

    @property
    def stacked(self) -> bool:
        return "{i}" in self.hf_key


def param_specs(cfg: ModelConfig) -> dict[str, ParamSpec]:
    """The description of every weight of `cfg`, keyed by its dotted name in the module."""
    D, F, L, N, K, H, V = (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers,
                           cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size)
    fam = cfg.family
    lay = "model.layers.{i}."

    def linear_in(name, heads, n, hf):  # ours [L, D, n, H] <- HF [n*H, D]
        return name, ParamSpec((L, D, n, H), ("layers", "embed", heads, "head_dim"), "normal",
                               lay + hf, (n * H, D), (n, H, D), (2, 0, 1))

    def bias(name, heads, n, hf):  # ours [L, n, H] <- HF [n*H]
        return name, ParamSpec((L, n, H), ("layers", heads, "head_dim"), "zeros", lay + hf,
                               (n * H,), (n, H), (0, 1))

    def norm(name, dim, hf, axis="norm"):
        return name, ParamSpec((L, dim), ("layers", axis), fam.norm_init, lay + hf, (dim,),
                               (dim,), (0,))

    def mlp(name, shape, axes, hf):  # HF [out, in] -> ours [in, out]
        hf_shape = (shape[1], shape[0])
        return name, ParamSpec((L, *shape), ("layers", *axes), "normal", lay + hf, hf_shape,
                               hf_shape, (1, 0))

    # every family has these two; its others follow the shared weights (the init order)
    norms = {f"layers.{name}": hf for name, hf in fam.layer_norms.items()}
    specs = dict([
        ("embed", ParamSpec((V, D), ("vocab", "embed"), "normal", "model.embed_tokens.weight",
                            (V, D), (V, D), (0, 1))),
        norm("layers.attn_norm", D, norms.pop("layers.attn_norm")),
        linear_in("layers.q", "heads", N, "self_attn.q_proj.weight"),
        linear_in("layers.k", "kv_heads", K, "self_attn.k_proj.weight"),
        linear_in("layers.v", "kv_heads", K, "self_attn.v_proj.weight"),
        ("layers.o", ParamSpec((L, N, H, D), ("layers", "heads", "head_dim", "embed"), "normal",
                               lay + "self_attn.o_proj.weight", (D, N * H), (D, N, H), (1, 2, 0))),
        norm("layers.mlp_norm", D, norms.pop("layers.mlp_norm")),
        mlp("layers.gate", (D, F), ("embed", "mlp"), "mlp.gate_proj.weight"),
        mlp("layers.up", (D, F), ("embed", "mlp"), "mlp.up_proj.weight"),
        mlp("layers.down", (F, D), ("mlp", "embed"), "mlp.down_proj.weight"),
        ("final_norm", ParamSpec((D,), ("norm",), fam.norm_init, "model.norm.weight", (D,),
                                 (D,), (0,))),
        *(norm(name, D, hf) for name, hf in norms.items()),
    ])
    if cfg.qkv_bias:
        specs.update([bias("layers.q_bias", "heads", N, "self_attn.q_proj.bias"),
                      bias("layers.k_bias", "kv_heads", K, "self_attn.k_proj.bias"),
                      bias("layers.v_bias", "kv_heads", K, "self_attn.v_proj.bias")])
    if cfg.qk_norm:
        specs.update([norm("layers.q_norm", H, "self_attn.q_norm.weight", "head_dim"),
                      norm("layers.k_norm", H, "self_attn.k_norm.weight", "head_dim")])
    if not cfg.tie_word_embeddings:
        # [V, D] like the embedding (and HF): one logits einsum for tied and untied heads, and
        # the loss's weight gradient is a plain [V, c] x [c, D] matmul, with no transposed copy
        # of the chunk's logit gradient ([D, V] made XLA:CPU transpose it; the step ran slower)
        specs["lm_head"] = ParamSpec((V, D), ("vocab", "embed"), "normal", "lm_head.weight",
                                     (V, D), (V, D), (0, 1))
    return specs


def num_params(cfg: ModelConfig) -> int:
    """The number of weights of `cfg` (adapters aside)."""
    return sum(math.prod(spec.shape) for spec in param_specs(cfg).values())


def param_shardings(cfg: ModelConfig, mesh: Mesh) -> dict[str, NamedSharding]:
    """Each weight's sharding on `mesh`, from its logical axes in `param_specs`."""
    return {name: named_sharding(mesh, spec.axes, spec.shape)
            for name, spec in param_specs(cfg).items()}


def init_value(spec: ParamSpec, key: jax.Array, dtype) -> jax.Array:
    if spec.init == "ones":
        return jnp.ones(spec.shape, dtype)
    if spec.init == "zeros":
        return jnp.zeros(spec.shape, dtype)
    return (0.02 * jax.random.normal(key, spec.shape, jnp.float32)).astype(dtype)


def split_layers(params: dict[str, Array]) -> dict[str, Array | tuple[Array, ...]]:
    """`params` with each stacked [L, ...] weight as a tuple of L arrays: `forward` over a split
    cache then reads every weight in place (one copy here, not one per layer per step)."""
    return {k: tuple(v[i] for i in range(v.shape[0])) if k.startswith("layers.") else v
            for k, v in params.items()}


def is_projection(spec: ParamSpec) -> bool:
    """Whether `spec` is a layer's projection weight (an HF linear layer's [out, in] matrix),
    which a block multiplies by through `s2jax.models.projection.project`."""
    return spec.stacked and len(spec.hf_shape) == 2


def input_axes(spec: ParamSpec) -> int:
    """How many of a projection W's per-layer axes x is contracted with (they come first in our
    layout).

    HF stores a projection as [out, in]; `hf_view` splits both into our axes, so the leading
    view axes whose sizes multiply to `out` are the outputs, and the rest are the inputs.
    """
    sizes = np.cumprod(spec.hf_view)
    n_out = int(np.argmax(sizes == spec.hf_shape[0])) + 1
    k = len(spec.hf_view) - n_out
    # PEFT flattens A's inputs and B's outputs in HF's order: ours must keep that order
    if tuple(spec.hf_perm) != (*range(n_out, n_out + k), *range(n_out)):
        raise AssertionError(f"{spec.hf_key}: layout {spec.hf_perm} is not [inputs, outputs]")
    return k


def _out_in_perm(spec: ParamSpec) -> tuple[int, ...]:
    """The axis order that takes a stacked projection [L, *in, *out] to [L, *out, *in]."""
    k, n = input_axes(spec), len(spec.shape)
    return (0, *range(1 + k, n), *range(1, 1 + k))


def out_in_layout(spec: ParamSpec) -> tuple[tuple[str | None, ...], tuple[int, ...]]:
    """(logical axes, shape) of a projection's `out_in_weights` form."""
    perm = _out_in_perm(spec)
    return tuple(spec.axes[i] for i in perm), tuple(spec.shape[i] for i in perm)


def out_in_weights(cfg: ModelConfig, params: dict[str, Array]) -> dict[str, Array]:
    """`params` with every projection weight W [L, *in, *out] replaced by `name + OUT_IN`, its
    transpose [L, *out, *in], which `project` multiplies by (`matmul_out_in`: faster on XLA:CPU
    for few rows, as in decode). Other weights and adapters pass unchanged."""
    specs = param_specs(cfg)
    out = {}
    for name, w in params.items():
        spec = specs.get(name)
        if spec is not None and is_projection(spec):
            out[name + OUT_IN] = jnp.transpose(w, _out_in_perm(spec))
        else:
            out[name] = w
    return out
