"""Splash attention (the TPU kernel, in Pallas interpret mode on CPU) equals the einsum path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from s2jax.models import splash
from s2jax.models.attention import attention
from s2jax.models.config import ModelConfig
from s2jax.models.module import Transformer
from s2jax.models.transformer import forward
from s2jax.parallel.sharding import make_mesh
from s2jax.sampling.loop import prefill_cache

B, T, N, K, H = 2, 200, 4, 2, 16  # T pads to 256: two 128-token kernel blocks + padding


def _inputs(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 4)
    q = jax.random.normal(ks[0], (B, T, N, H))
    k, v = (jax.random.normal(key, (B, T, K, H)) for key in ks[1:3])
    # row 0 packs three examples; row 1 is one example, then padding (segment 0)
    seg = jnp.array([[1] * 70 + [2] * 90 + [3] * 40, [1] * 150 + [0] * 50])
    return q, k, v, seg, ks[3]


def _dense_mask(seg, window):
    idx = jnp.arange(T)
    mask = idx[:, None] >= idx[None, :]
    if window:
        mask &= (idx[:, None] - idx[None, :]) < window
    if seg is None:
        return jnp.broadcast_to(mask, (B, T, T))
    return mask & (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] != 0)


def _check(f_got, f_want, q, k, v, seg, key, atol=2e-5):
    """Outputs and gradients (of a loss that ignores padding rows) agree."""
    real = np.ones((B, T, 1, 1)) if seg is None else np.asarray(seg != 0)[:, :, None, None]
    do = jax.random.normal(key, (B, T, N, H)) * real
    got, got_vjp = jax.vjp(f_got, q, k, v)
    want, want_vjp = jax.vjp(f_want, q, k, v)
    np.testing.assert_allclose(got * real, want * real, rtol=2e-5, atol=atol)
    for name, g, w in zip("qkv", got_vjp(do), want_vjp(do), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=atol * 5, err_msg=name)
        assert float(jnp.abs(w).sum()) > 0


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("window", [0, 37])
def test_splash_equals_the_einsum_reference(packed, window):
    q, k, v, seg, key = _inputs()
    seg = seg if packed else None
    mask = _dense_mask(seg, window)
    with splash.forced():
        _check(lambda q, k, v: splash.self_attention(q, k, v, seg, window=window, scale=0.3),
               lambda q, k, v: attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
                                         mask, scale=0.3), q, k, v, seg, key)


@pytest.mark.slow  # ~20 s: two kernels (a window each) in interpret mode, with gradients
def test_splash_soft_cap_and_a_traced_window():
    # Gemma 2's soft-capped scores; a window that a layer scan passes as a traced value picks
    # one of the model's windows
    q, k, v, seg, key = _inputs(1)
    q = q * 4  # scores well into the cap
    mask = _dense_mask(seg, 50)
    with splash.forced():
        _check(jax.jit(lambda q, k, v: splash.self_attention(
                   q, k, v, seg, window=jnp.int32(50), windows=(0, 50, 0),
                   logit_softcap=20.0)),
               lambda q, k, v: attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
                                         mask, logit_softcap=20.0), q, k, v, seg, key)


@pytest.mark.parametrize("mesh", [dict(data=2, tensor=2), dict(fsdp=2, tensor=4)])
def test_splash_on_a_mesh_equals_one_device(mesh):
    # rows over (data, fsdp), heads over tensor; with tensor=4 the 2 KV heads are repeated to
    # the 4 query heads, so that each shard holds its own query heads' keys
    q, k, v, seg, key = _inputs(2)
    mesh = make_mesh(**mesh, devices=jax.devices()[:int(np.prod(list(mesh.values())))])
    with splash.forced():
        _check(jax.jit(lambda q, k, v: splash.self_attention(q, k, v, seg, mesh=mesh)),
               lambda q, k, v: splash.self_attention(q, k, v, seg), q, k, v, seg, key)


def _model(**kw):
    cfg = ModelConfig(architecture="Qwen2ForCausalLM", vocab_size=64, hidden_size=32,
                      intermediate_size=48, num_layers=3, num_heads=4, num_kv_heads=2,
                      head_dim=8, qkv_bias=True, **kw)
    return cfg, Transformer(cfg, rngs=nnx.Rngs(0)).params()


@pytest.mark.slow  # ~35 s: three layers of the kernel in interpret mode, forward and backward
def test_forward_with_splash_equals_the_einsum_forward_and_its_gradients():
    # a training forward: packed rows, per-layer sliding windows (Qwen2 layer_types)
    cfg, params = _model(sliding_windows=(0, 24, 0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, cfg.vocab_size)
    _, _, _, seg, _ = _inputs()
    real = np.asarray(seg != 0)[:, :, None]

    def loss(p):
        logits, _ = forward(cfg, p, tokens, segment_ids=seg, remat="full")
        return jnp.sum(jax.nn.log_softmax(logits) * real)

    want, want_g = jax.jit(jax.value_and_grad(loss))(params)
    with splash.forced():
        got, got_g = jax.jit(jax.value_and_grad(loss))(params)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for name in params:
        np.testing.assert_allclose(got_g[name], want_g[name], rtol=1e-3, atol=1e-5,
                                   err_msg=name)


@pytest.mark.slow  # ~30 s: a model's prefill with the kernel in interpret mode
def test_prefill_with_splash_equals_chunked_prefill():
    # on TPU a prompt is prefilled in one pass through splash; elsewhere in 128-token chunks
    cfg, params = _model(sliding_windows=(0, 24, 0))
    tokens = jax.random.randint(jax.random.PRNGKey(2), (B, 256), 0, cfg.vocab_size)
    lengths = jnp.array([256, 131])
    run = lambda: jax.jit(lambda p: prefill_cache(cfg, jnp.float32, p, tokens, lengths,
                                                  jnp.float32))(params)
    want_last, want = run()
    with splash.forced():
        got_last, got = run()
    np.testing.assert_allclose(got_last, want_last, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.k, want.k, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.v, want.v, rtol=1e-4, atol=1e-5)


def test_splash_is_chosen_by_the_mesh_platform():
    assert not splash.use_splash(None)  # CPU
    mesh = make_mesh(devices=jax.devices()[:1])
    assert splash.platform(mesh) == "cpu" and not splash.use_splash(mesh)
    with splash.forced():
        assert splash.use_splash(mesh)
