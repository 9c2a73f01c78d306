"""GPU-only checks: cuDNN flash attention on the training path equals the einsum reference.

They skip on CPU (CI has no GPU). On a GPU machine:
    JAX_PLATFORMS=cuda python -m pytest -q tests/test_gpu.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2jax
from s2jax.models.attention import attention, self_attention
from s2jax.train.data import pack, tokenize_examples
from s2jax.train.step import token_losses
from tests.test_train import _examples

pytestmark = pytest.mark.skipif(jax.default_backend() != "gpu",
                                reason="needs a GPU backend (cuDNN flash attention)")


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def test_training_attention_takes_cudnn_and_matches_the_fp32_reference():
    """bf16 q/k/v with a packed causal mask and a padding tail: `self_attention` compiles to
    cuDNN's fused attention, its output and gradients match the fp32 einsum reference to bf16
    rounding, and fully masked (padding) rows stay finite, so a zero loss weight zeroes them."""
    B, T, N, K, H = 2, 256, 8, 2, 64
    ks = jax.random.split(jax.random.PRNGKey(1), 4)
    q32 = jax.random.normal(ks[0], (B, T, N, H))
    k32, v32 = (jax.random.normal(key, (B, T, K, H)) for key in ks[1:3])
    seg = jnp.array([[1] * 100 + [2] * 156, [1] * 200 + [0] * 56])
    idx = jnp.arange(T)
    mask = (idx[:, None] >= idx[None, :]) & (seg[:, :, None] == seg[:, None, :]) & (
        seg[:, None, :] != 0)
    real = (seg != 0)[:, :, None, None]
    do = jax.random.normal(ks[3], (B, T, N, H)) * real

    def fused(q, k, v):
        return self_attention(q, k, v, mask, scale=H**-0.5, causal=True)

    def reference(q, k, v):
        return attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask,
                         scale=H**-0.5)

    bf = [x.astype(jnp.bfloat16) for x in (q32, k32, v32)]
    lowered = jax.jit(fused).lower(*bf).as_text()
    assert "__cudnn$fmha" in lowered, "self_attention on GPU did not lower to cuDNN attention"

    got, vjp = jax.vjp(fused, *bf)
    got_grads = vjp(do.astype(jnp.bfloat16))
    with jax.default_matmul_precision("highest"):
        # the reference sees the same bf16-rounded inputs, computed in fp32
        want, ref_vjp = jax.vjp(reference, *(x.astype(jnp.float32) for x in bf))
        want_grads = ref_vjp(do)
    assert bool(jnp.isfinite(got.astype(jnp.float32)).all()), "non-finite attention output"
    assert rel_err(got * real, want * real) < 1e-2
    for name, g, w in zip("qkv", got_grads, want_grads, strict=True):
        assert bool(jnp.isfinite(g.astype(jnp.float32)).all()), f"non-finite d{name}"
        assert rel_err(g, w) < 2e-2, name


def test_packed_bf16_losses_on_gpu_match_the_fp32_unpacked_ones(hf_checkpoint):
    """The training loss path with bf16 compute (cuDNN attention) gives each packed example the
    loss the fp32 path (einsum attention) gives it alone in a row: packing leaks nothing."""
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    data = tokenize_examples(tok, _examples(7, seed=2))
    order = [3, 0, 6, 1, 5, 2, 4]

    def per_example(packed: bool, dtype):
        b = pack(data, order, 64, packed)
        nll, _ = token_losses(model.config, model.params(), *(jnp.asarray(b[k]) for k in (
            "tokens", "targets", "segment_ids")), dtype=dtype)
        nll = np.asarray(nll) * b["weights"]
        assert np.isfinite(nll).all()
        return np.array([nll[r][b["segment_ids"][r] == s].sum() for r in range(len(nll))
                         for s in range(1, b["segment_ids"][r].max() + 1)])

    with jax.default_matmul_precision("highest"):
        want = per_example(False, jnp.float32)
    got = per_example(True, jnp.bfloat16)
    assert got.shape == want.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=3e-2)
