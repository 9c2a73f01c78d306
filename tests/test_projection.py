"""`project`: x @ W (+ LoRA) as one 2-D matmul, equal to the einsum it stands for."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2jax.models.projection import LORA_A, LORA_B, LORA_SCALE, project

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
