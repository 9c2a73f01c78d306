"""No-cache attention: `jax.nn.dot_product_attention` equals the einsum reference on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2jax.models.attention import self_attention


@pytest.mark.slow
def test_dot_product_attention_equals_the_einsum_reference():
    B, T, N, K, H = 2, 9, 6, 2, 8  # grouped queries: 3 per KV head
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    q = jax.random.normal(ks[0], (B, T, N, H))
    k, v = (jax.random.normal(key, (B, T, K, H)) for key in ks[1:3])
    # row 0 packs two examples; row 1 is one example then padding (segment 0)
    seg = jnp.array([[1] * 4 + [2] * 5, [1] * 6 + [0] * 3])
    idx = jnp.arange(T)
    mask = (idx[:, None] >= idx[None, :]) & (seg[:, :, None] == seg[:, None, :]) & (
        seg[:, None, :] != 0)
    real = np.asarray(seg != 0)[:, :, None, None]  # padding rows attend to nothing: any output
    do = jax.random.normal(ks[3], (B, T, N, H)) * real

    def run(implementation):
        f = lambda q, k, v: self_attention(q, k, v, mask, scale=0.3,
                                           causal=True, implementation=implementation)
        out, vjp = jax.vjp(f, q, k, v)
        return out, vjp(do)

    want, want_grads = run(None)
    got, got_grads = run("xla")
    np.testing.assert_allclose(got * real, want * real, rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(want_grads[1]).sum()) > 0
