"""`project`: x @ W (+ LoRA) as one 2-D matmul, equal to the einsum it stands for."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from s2jax.models.config import ModelConfig
from s2jax.models.lora import weight_shardings
from s2jax.models.module import Transformer
from s2jax.models.params import out_in_weights
from s2jax.models.projection import (
    LORA_A,
    LORA_B,
    LORA_SCALE,
    OUT_IN,
    OUT_IN_MAX_ROWS,
    matmul_out_in,
    project,
)
from s2jax.models.transformer import forward
from s2jax.parallel.sharding import make_mesh

B, T, N, H, D, R = 2, 9, 3, 4, 16, 2


def _weights():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    lp = {"o": jax.random.normal(k[0], (N, H, D)),
          "o" + LORA_A: jax.random.normal(k[1], (N, H, R)),
          "o" + LORA_B: jax.random.normal(k[2], (R, D)), LORA_SCALE: jnp.float32(0.5)}
    return lp, jax.random.normal(k[3], (B, T, N, H))


def test_two_input_axes_with_an_adapter_equal_the_einsum_values_and_gradients():
    lp, x = _weights()

    def ours(lp, x):
        return jnp.sum(jnp.sin(project(lp, "o", "btnh,nhd->btd", x, jnp.float32)))

    def reference(lp, x):
        xa = jnp.einsum("btnh,nhr->btr", x, lp["o" + LORA_A]) * lp[LORA_SCALE]
        y = (jnp.einsum("btnh,nhd->btd", x, lp["o"])
             + jnp.einsum("btr,rd->btd", xa, lp["o" + LORA_B]))
        return jnp.sum(jnp.sin(y))

    got, got_g = jax.value_and_grad(ours, (0, 1))(lp, x)
    want, want_g = jax.value_and_grad(reference, (0, 1))(lp, x)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for g, w in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_axes_that_are_not_x_trailing_times_w_leading_are_refused():
    lp, x = _weights()
    with pytest.raises(ValueError, match="trailing"):
        project(lp, "o", "btnh,hnd->btd", x, jnp.float32)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's layout choice")
def test_weight_gradient_reads_its_operands_without_a_transposed_copy():
    """The cause this layout fixes: no [out, tokens] or [in, tokens] array in the gradient."""
    F = 24
    w = jnp.ones((D, F))

    def loss(w, x):
        y = project({"up": w}, "up", "btd,df->btf", jnp.tanh(x), jnp.float32)
        return jnp.sum(jax.nn.silu(y))

    hlo = jax.jit(jax.grad(loss)).lower(w, jnp.ones((B, T, D))).compile().as_text()
    shapes = set(re.findall(r"f32\[(\d+,\d+)\]", hlo))
    assert not shapes & {f"{F},{B * T}", f"{D},{B * T}"}, shapes


@pytest.mark.parametrize("rows", [8, OUT_IN_MAX_ROWS + 8])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_by_a_transposed_weight_equals_the_einsum_values_and_gradients(rows, dtype):
    """Few rows take (W^T x^T)^T on CPU, more the plain product; both are x @ W, either
    way differentiable, for one input axis and for two."""
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.normal(k[0], (rows, N, H)).astype(dtype)
    w = jax.random.normal(k[1], (N, H, D)).astype(dtype)  # [*in, *out], two input axes
    wt = jnp.transpose(w, (2, 0, 1))  # [*out, *in]
    got = matmul_out_in(x, wt, 2)
    want = jnp.einsum("bnh,nhd->bd", x, w, preferred_element_type=jnp.float32).astype(dtype)
    assert got.dtype == want.dtype and got.shape == (rows, D)
    tol = 1e-5 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=tol, atol=tol)
    # one input axis, a wide result in fp32 (the logits' form)
    v = jax.random.normal(k[2], (40, N * H)).astype(dtype)  # [V, D] as the head is stored
    x2 = x.reshape(rows, N * H)
    np.testing.assert_allclose(matmul_out_in(x2, v, 1, jnp.float32),
                               jnp.einsum("bd,vd->bv", x2, v, preferred_element_type=jnp.float32),
                               rtol=tol, atol=tol)
    if dtype == "float32":
        loss = lambda x, wt: jnp.sum(jnp.sin(matmul_out_in(x, wt, 2)))
        ref = lambda x, wt: jnp.sum(jnp.sin(jnp.einsum("bnh,dnh->bd", x, wt)))
        for g, r in zip(jax.grad(loss, (0, 1))(x, wt), jax.grad(ref, (0, 1))(x, wt),
                        strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's operand order")
def test_few_rows_multiply_with_the_weight_as_the_left_operand():
    """The cause: XLA:CPU's GEMM is faster as [out, in] x [in, rows] for few rows, and without
    the barrier XLA folds the result's transpose back into the slow [rows, out] product."""
    wt = jnp.ones((48, D))

    def dots(rows):
        hlo = jax.jit(lambda x, wt: matmul_out_in(x, wt, 1)).lower(
            jnp.ones((rows, D)), wt).compile().as_text()
        return set(re.findall(r"f32\[(\d+,\d+)\]\{1,0\} dot\(", hlo)) | set(
            re.findall(r"f32\[(\d+,\d+)\]\{1,0\} fusion\([^\n]*dot", hlo))

    few, many = OUT_IN_MAX_ROWS, OUT_IN_MAX_ROWS + 1
    assert f"48,{few}" in dots(few) and f"{few},48" not in dots(few)
    assert f"{many},48" in dots(many) and f"48,{many}" not in dots(many)


def _tiny_qwen():
    cfg = ModelConfig(architecture="Qwen2ForCausalLM", vocab_size=64, hidden_size=32,
                      intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=8, qkv_bias=True)
    return cfg, Transformer(cfg, rngs=nnx.Rngs(0)).params()


def test_a_model_on_transposed_projections_equals_it_on_its_own():
    """`out_in_weights` transposes exactly the projections (q, k, v: one input axis; o: two;
    the MLP's), and every block multiplies by them where it finds them."""
    cfg, params = _tiny_qwen()
    moved = out_in_weights(cfg, params)
    projections = {"layers." + n for n in ("q", "k", "v", "o", "gate", "up", "down")}
    assert {k[:-len(OUT_IN)] for k in moved if k.endswith(OUT_IN)} == projections
    assert moved["layers.o" + OUT_IN].shape == (2, 32, 4, 8)  # [L, D] + [N, H]
    np.testing.assert_array_equal(moved["layers.q" + OUT_IN][1],
                                  params["layers.q"][1].transpose(1, 2, 0))
    for name in params:
        if name not in projections:
            assert moved[name] is params[name]
    tokens = jax.random.randint(jax.random.PRNGKey(2), (3, 7), 0, cfg.vocab_size)
    want, _ = forward(cfg, params, tokens)
    got, _ = forward(cfg, moved, tokens)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # sharded like the weight they transpose: a head-split q stays head-split
    mesh = make_mesh(tensor=2, devices=jax.devices()[:2])
    local = weight_shardings(cfg, mesh, params)["layers.q"].shard_shape((2, 32, 4, 8))
    moved_local = weight_shardings(cfg, mesh, moved)["layers.q" + OUT_IN].shard_shape(
        (2, 4, 8, 32))
    assert local == (2, 32, 2, 8) and moved_local == (2, 2, 8, 32)
