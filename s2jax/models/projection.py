"""The projections of a decoder block, x @ W, with the LoRA term where W carries an adapter.

LoRA adapters ride in a layer's weight dict beside the weight W they adapt: `name + LORA_A` is
A (W's input axes, then the rank), `name + LORA_B` is B (the rank, then W's output axes), and
LORA_SCALE is alpha / rank. Every family's block projects through `project`, so a model with
adapters needs no other code path; see s2jax/models/lora.py for their description and export.

Every product runs as one 2-D matmul, tokens x inputs times inputs x outputs (free reshapes of
row-major arrays). A weight gradient contracted over two token axes (batch and time) makes
XLA:CPU canonicalise the dot by writing out a transposed copy of an operand, such as the whole
SwiGLU backward [F, B*T]; over the single flattened token axis it calls the matmul with the
operand transposed in place. On the 5M SFT step those copies were about 1/6 of the op time.
"""

from __future__ import annotations

import functools
import math
import os
import re

import jax
import jax.numpy as jnp
from jax.lax import optimization_barrier
from jaxtyping import Array

LORA_A, LORA_B, LORA_SCALE = ".lora_a", ".lora_b", "lora_scale"
# W stored transposed, [*out, *in], beside or instead of W: see `matmul_out_in`
OUT_IN = ".out_in"
# rows of x up to which XLA:CPU multiplies faster with the weight as the left operand
OUT_IN_MAX_ROWS = 64


CPU_BF16_DOT_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512/AMX, Arm
CPUINFO = "/proc/cpuinfo"


@functools.cache
def cpu_bf16_dot() -> bool:
    """Whether this machine's CPU has bf16 dot-product instructions (x86 AVX512-BF16 or
    AMX-BF16, Arm's BF16), as `CPUINFO` lists them; `S2JAX_CPU_BF16_DOT=1` or `0` says so
    instead (a machine without that file counts as without). Read once per process."""
    forced = os.environ.get("S2JAX_CPU_BF16_DOT", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    flags = re.findall(r"^(?:flags|Features)\s*:(.*)$", text, flags=re.MULTILINE)
    return bool(CPU_BF16_DOT_FLAGS & set(" ".join(flags).split()))


def xla_cpu_16bit(dtype) -> bool:
    """Whether `dtype` is a 16-bit float computed by XLA:CPU, which runs such products and moves
    such arrays fast only in some forms.

    A bf16 x bf16 matmul with an fp32 result runs on the CPU's bf16 dot products (AVX512-BF16),
    one with a bf16 result through a slower generic path (`matmul` asks for fp32 results).
    Measured on a 2-core Zen 4, SmolLM2 shapes: [1200, 576] x [576, 1536] at 425 against 206
    GFLOP/s (fp32: 207), [32, 576] x [576, 1536] at 258 against 132; bf16 sampling went from 241
    to 343 tokens/s. A CPU without those instructions runs 16-bit products fastest from fp32
    operands (`fp32_products`). XLA:CPU has no 16-bit dynamic slice, update, scatter or gather
    either (the layer scan, the KV cache writes and the embedding move the bits:
    `s2jax.models.transformer`). GPUs and TPUs accumulate bf16 products in fp32 inside the
    matmul unit either way, and keep bf16 outputs.
    """
    dtype = jnp.dtype(dtype)
    return (jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize == 2
            and jax.default_backend() == "cpu")


def to_bits(x: Array) -> Array:
    """On XLA:CPU, a 16-bit float array as its uint16 bits; otherwise `x` (`from_bits` undoes
    it).

    XLA:CPU has no 16-bit dynamic slice, update, gather or scatter: under the layer scan it
    converts a stacked bf16 weight to fp32 before the loop, slices that and rounds each layer's
    slice back, and it converts the whole cache to fp32 and back around every write of a token's
    keys, so a call writes and reads fp32 copies of the model and its cache (SmolLM2-135M bf16
    prefill, 32 x 48 tokens: 0.18 + 0.17 of 1.75 thread-seconds; decode: a sixth of the step;
    twice the weights' memory at any size). Slices, updates and scatters of the bits copy them
    as they are."""
    return jax.lax.bitcast_convert_type(x, jnp.uint16) if xla_cpu_16bit(x.dtype) else x


def from_bits(x: Array, dtype) -> Array:
    """`x` (from `to_bits`) as `dtype` again."""
    return jax.lax.bitcast_convert_type(x, dtype) if x.dtype != dtype else x


def fp32_products(dtype) -> bool:
    """Whether products of `dtype` operands run on fp32 copies of them: 16-bit floats on
    XLA:CPU, but for bf16 on a CPU with bf16 dot products (`cpu_bf16_dot`). Without those
    instructions (AVX2, e.g. Zen 3) the bf16 x bf16 -> fp32 product takes a generic path, at
    103 against 164 GFLOP/s for fp32 operands at [1536, 576] x [576, 1536] on 2 Zen 3 cores; the
    operands' conversion costs a pass over them."""
    return xla_cpu_16bit(dtype) and not (jnp.dtype(dtype) == jnp.bfloat16 and cpu_bf16_dot())


def dot_operands(*xs: Array) -> tuple[Array, ...]:
    """`xs` as a product takes them: as fp32 where `fp32_products` holds for the first."""
    if not fp32_products(xs[0].dtype):
        return xs
    return tuple(x.astype(jnp.float32) for x in xs)


def matmul(x: Array, w: Array, n_in: int) -> Array:
    """x [..., *in] @ w [*in, *out] -> [..., *out], for the `n_in` leading axes of w, as a
    [tokens, prod(in)] x [prod(in), prod(out)] matmul, in x's dtype (accumulated in fp32 where
    `xla_cpu_16bit`, from fp32 operands where `fp32_products`)."""
    return _product(x, w, n_in, out_in=False)


def products_fp32(dtype) -> bool:
    """Whether products of `dtype` operands run in fp32: fp32 itself, or `fp32_products`."""
    return jnp.dtype(dtype) == jnp.float32 or fp32_products(dtype)


def out_in_faster(rows: int, dtype) -> bool:
    """Whether a product of `rows` rows of `dtype` runs faster by a transposed weight
    (`matmul_out_in`): on XLA:CPU, for at most `OUT_IN_MAX_ROWS` rows and fp32 products."""
    return (rows <= OUT_IN_MAX_ROWS and products_fp32(dtype)
            and jax.default_backend() == "cpu")


def matmul_out_in(x: Array, wt: Array, n_in: int, out_dtype=None) -> Array:
    """x [..., *in] @ W -> [..., *out] for W given transposed, wt [*out, *in] (the layout of
    HF's linear weights and of the embedding): like `matmul`, in `out_dtype` if given.

    Where `out_in_faster` holds it computes (wt @ x^T)^T: XLA:CPU's GEMM runs [out, in] x
    [in, rows] well above [rows, in] x [in, out] when the rows are few, as in a decode step.
    On 2 Zen 3 cores, 32 rows: [1536, 576] at 147 against 100 GFLOP/s, the [49152, 576] head
    12.3 against 18.3 ms; from 256 rows on the plain product is as fast or faster. The
    optimization barrier keeps XLA from folding the transpose of the result back into the
    product (which made it the slow one again); the transpose itself is a copy of the small
    [rows, out] result."""
    return _product(x, wt, n_in, out_in=True, out_dtype=out_dtype)


def _product(x: Array, w: Array, n_in: int, *, out_in: bool, out_dtype=None) -> Array:
    """x [..., *in] times w, [*in, *out] or (`out_in`) [*out, *in], as one 2-D matmul."""
    k = math.prod(x.shape[x.ndim - n_in:])
    lead = x.shape[:x.ndim - n_in]
    out = w.shape[:w.ndim - n_in] if out_in else w.shape[n_in:]
    acc = out_dtype if out_dtype is not None else (
        jnp.float32 if xla_cpu_16bit(x.dtype) else None)
    a, b = dot_operands(x.reshape(-1, k), w.reshape(-1, k) if out_in else w.reshape(k, -1))
    if out_in and out_in_faster(a.shape[0], x.dtype):
        yt = jax.lax.dot_general(b, a, (((1,), (1,)), ((), ())), preferred_element_type=acc)
        y = optimization_barrier(yt).T
    else:
        contract = (((1,), (1 if out_in else 0,)), ((), ()))
        y = jax.lax.dot_general(a, b, contract, preferred_element_type=acc)
    return y.astype(out_dtype or jnp.result_type(x, w)).reshape(*lead, *out)


def project(lp: dict[str, Array], name: str, eq: str, x: Array, dtype) -> Array:
    """`einsum(eq, x, W)` for W = lp[name], plus scale * (x @ A) @ B where W has an adapter
    (W is never merged: the adapter's two thin matmuls cost O(rank) per token).

    `eq` names the axes; W's leading axes must be x's trailing ones, in order (they are
    contracted), and the output is x's other axes followed by W's others. Where lp holds
    `name + OUT_IN` (W transposed, `s2jax.models.params.out_in_weights`) it multiplies by that
    (`matmul_out_in`)."""
    (xs, ws), out = eq.split("->")[0].split(","), eq.split("->")[1]
    n_in = sum(c in xs for c in ws)
    if ws[:n_in] != xs[len(xs) - n_in:] or out != xs[:len(xs) - n_in] + ws[n_in:]:
        raise ValueError(f"project: {eq!r} is not x's trailing axes times W's leading ones")
    if name + OUT_IN in lp:
        y = matmul_out_in(x, lp[name + OUT_IN].astype(dtype), n_in)
    else:
        y = matmul(x, lp[name].astype(dtype), n_in)
    if name + LORA_A not in lp:
        return y
    a, b = lp[name + LORA_A].astype(dtype), lp[name + LORA_B].astype(dtype)
    xa = matmul(x, a, n_in) * lp[LORA_SCALE].astype(dtype)
    return y + matmul(xa, b, 1)
