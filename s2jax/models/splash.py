"""Splash attention: JAX's Pallas TPU kernel for a sequence attending over itself.

On TPU the training step and prefill call this instead of the einsum `attention`, which holds
fp32 [B, N, T, T] scores per layer: the kernel streams key blocks through VMEM (flash
attention) and skips blocks its mask rules out, so causal attention does half the work and a
sliding window only the blocks on its band. The mask is structured, never a dense array:
causal or local (a window) from `splash_attention_mask`, and packing as segment ids.

`use_splash(mesh)` is the dispatch rule `forward` asks: the devices of the mesh (or the default
backend) are TPUs, or a test forced the kernel (`forced`, in Pallas interpret mode on CPU).

The kernel works on one example: q [N, T, H], k and v [K, T, H] (grouped queries: N a multiple
of K). A batch is a `vmap`; a mesh is a `shard_map` with rows over the batch axes and heads over
`tensor`, as MaxText runs it (the partitioner cannot split a Pallas call itself).
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, Int

from s2jax.parallel.sharding import logical_to_spec

_FORCED: dict[str, bool] = {}  # {"interpret": bool} while `forced` is active


@contextlib.contextmanager
def forced(interpret: bool = True):
    """Within this block `use_splash` is True on any backend; `interpret` runs the Pallas
    kernel in interpret mode (plain JAX ops), which is how it is tested on CPU."""
    _FORCED["interpret"] = interpret
    try:
        yield
    finally:
        _FORCED.clear()


def _sa():
    """JAX's splash attention package, imported where used: Pallas costs every process that
    imports the model a noticeable start-up otherwise, and only TPU programs need it."""
    from jax.experimental.pallas.ops.tpu import splash_attention  # start-up: see above

    return splash_attention


def platform(mesh: Mesh | None) -> str:
    """The platform a program is built for: its mesh's devices (TPU devices of a compile-only
    topology, in `s2jax plan --target`), else the default backend."""
    if mesh is not None:
        return mesh.devices.flat[0].platform
    return jax.default_backend()


def use_splash(mesh: Mesh | None) -> bool:
    return bool(_FORCED) or platform(mesh) == "tpu"


def _block(T: int) -> int:
    """The largest of 512, 256, 128 that divides T (T is a multiple of 128)."""
    return next(b for b in (512, 256, 128) if T % b == 0)


@functools.lru_cache(maxsize=64)
def _kernel(T: int, N: int, window: int, softcap: float | None, interpret: bool):
    """The kernel for N query heads over T tokens, causal, within `window` (0: unlimited)."""
    sa = _sa()
    if window:  # key s is in the window of query t when t - window < s <= t
        mask = sa.LocalMask((T, T), window_size=(window - 1, 0), offset=0)
    else:
        mask = sa.CausalMask((T, T))
    b = _block(T)
    blocks = sa.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                           block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
    # the mask tables become constants of every program; built outside any trace, so the
    # cached kernel holds concrete arrays and never a tracer of the program that built it
    with jax.ensure_compile_time_eval():
        return sa.make_splash_mha(sa.MultiHeadMask([mask] * N), block_sizes=blocks,
                                  head_shards=1, q_seq_shards=1, attn_logits_soft_cap=softcap,
                                  interpret=interpret)


def _specs(mesh: Mesh | None, shape_q, shape_k) -> tuple[PartitionSpec, PartitionSpec, bool]:
    """(q's spec, k's spec, whether to repeat k/v to N heads) for [B, N|K, T, H] arrays.

    KV heads that `tensor` does not divide while query heads it does are repeated to N heads
    first: each shard must hold the KV heads of its own query heads.
    """
    if mesh is None or mesh.size == 1:
        return PartitionSpec(None, None), PartitionSpec(None, None), False
    q_spec = logical_to_spec(("batch", "heads", None, None), shape_q, mesh)
    k_spec = logical_to_spec(("batch", "kv_heads", None, None), shape_k, mesh)
    repeat = q_spec[1] is not None and k_spec[1] is None
    return q_spec, (q_spec if repeat else k_spec), repeat


def self_attention(q: Float[Array, "B T N H"], k: Float[Array, "B T K H"],
                   v: Float[Array, "B T K H"], segment_ids: Int[Array, "B T"] | None, *,
                   window: int | Array = 0, windows: tuple[int, ...] = (0,),
                   scale: float | None = None, logit_softcap: float | None = None,
                   mesh: Mesh | None = None) -> Float[Array, "B T N H"]:
    """Causal attention of each row over itself with the splash kernel.

    Args:
      q, k, v: queries, keys and values (after rope).
      segment_ids: packed examples (a query sees keys of its own id only; 0 is padding, whose
        rows see padding and whose outputs are to be ignored), or None: one sequence per row.
      window: the layer's sliding window (0: none); a traced value (a layer scan's) picks one of
        `windows`, the distinct windows of the model, each a kernel of its own.
      scale: score scale (default H^-1/2); logit_softcap: Gemma 2's soft-capping of scores.
      mesh: shard rows over its batch axes and heads over `tensor` (None: one device).

    Returns:
      The attention output [B, T, N, H], equal to the einsum `attention` with the same mask on
      every row whose segment id is not 0.
    """
    if isinstance(window, int) or len(set(windows)) == 1:
        w = window if isinstance(window, int) else windows[0]
        return _sharded(q, k, v, segment_ids, w, scale, logit_softcap, mesh)
    distinct = sorted(set(windows))
    branches = [functools.partial(_sharded, window=w, scale=scale, softcap=logit_softcap,
                                  mesh=mesh) for w in distinct]
    index = jnp.argmax(jnp.asarray(distinct) == window)
    return jax.lax.switch(index, [lambda a, b, c, s, f=f: f(a, b, c, s) for f in branches],
                          q, k, v, segment_ids)


def _sharded(q, k, v, segment_ids, window, scale, softcap, mesh):
    """`self_attention` for one static window: pads T to a multiple of 128 (the kernel's
    block), runs the kernel per row on every shard, and drops the padding."""
    B, T, N, H = q.shape
    pad = -T % 128
    q = q * jnp.asarray(H**-0.5 if scale is None else scale, q.dtype)
    # heads before tokens, as the kernel takes them; padded tokens come after every real one,
    # so causal masking keeps them out of real rows (and they get a segment of their own)
    q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
               for x in (q, k, v))
    seg = None
    if segment_ids is not None:
        seg = jnp.pad(segment_ids.astype(jnp.int32), ((0, 0), (0, pad)), constant_values=-1)
    q_spec, k_spec, repeat = _specs(mesh, q.shape, k.shape)
    if repeat:
        k, v = (jnp.repeat(x, N // x.shape[1], axis=1) for x in (k, v))
    heads = N // (mesh.shape[q_spec[1]] if q_spec[1] is not None and mesh is not None else 1)
    kernel = _kernel(T + pad, heads, window, softcap, _FORCED.get("interpret", False))
    segments = _sa().SegmentIds

    def rows(q, k, v, seg):
        one = lambda q, k, v, s: kernel(q, k, v, segment_ids=None if s is None
                                        else segments(q=s, kv=s))
        return jax.vmap(one)(q, k, v, seg)

    if any(q_spec):
        seg_spec = PartitionSpec(q_spec[0], None)
        rows = jax.shard_map(rows, mesh=mesh, in_specs=(q_spec, k_spec, k_spec, seg_spec),
                             out_specs=q_spec, check_vma=False)
    out = rows(q, k, v, seg)
    return out.transpose(0, 2, 1, 3)[:, :T]
