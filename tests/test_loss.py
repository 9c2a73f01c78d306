"""Fused chunked LM head + cross-entropy: equal to the unchunked logits' loss under autodiff."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from s2jax.models.config import ModelConfig
from s2jax.models.module import Transformer
from s2jax.models.transformer import forward, resolve_remat
from s2jax.train.config import TrainConfig
from s2jax.train.loss import chunked_losses, fused_loss
from s2jax.train.step import _sums

B, T, D, V = 2, 11, 8, 37


def _data(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    x = jax.random.normal(k[0], (B, T, D))
    targets = jax.random.randint(k[1], (B, T), 0, V)
    weights = (jax.random.uniform(k[2], (B, T)) > 0.4).astype(jnp.float32)
    heads = {"embed": 0.5 * jax.random.normal(k[3], (V, D)),
             "lm_head": 0.5 * jax.random.normal(k[4], (V, D))}
    return x, targets, weights, heads


# a tied head with a final soft-cap (Gemma 2's), and a plain untied LM head
LOGITS = {
    "tied_softcap": (lambda h, x: 3.0 * jnp.tanh(jnp.einsum("...d,vd->...v", x, h["embed"]) / 3.0),
                     "embed"),
    "untied": (lambda h, x: jnp.einsum("...d,vd->...v", x, h["lm_head"]), "lm_head"),
}


# chunk: all at once, 1 and 4 positions per row (T padded up), more than there are
@pytest.mark.parametrize("head_kind,chunk", [("tied_softcap", 0), ("tied_softcap", 2),
                                             ("untied", 9), ("untied", 100)])
def test_fused_loss_and_grads_equal_the_unchunked_reference(head_kind, chunk):
    logits_fn, name = LOGITS[head_kind]
    x, targets, weights, heads = _data()
    head = {name: heads[name]}

    def reference(head, x, weights, targets):
        nll = optax.softmax_cross_entropy_with_integer_labels(logits_fn(head, x), targets)
        return jnp.sum(nll * weights)

    def fused(head, x, weights, targets):
        return fused_loss(logits_fn, chunk, head, x, targets, weights)[0]

    want, want_g = jax.jit(jax.value_and_grad(reference, (0, 1)))(head, x, weights, targets)
    got, got_g = jax.jit(jax.value_and_grad(fused, (0, 1)))(head, x, weights, targets)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for g, w in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # weights are data (a position of weight 0 is never scored): their cotangent is zero
    assert not jax.grad(fused, 2)(head, x, weights, targets).any()
    # masked tokens contribute nothing: any target there gives the same loss and gradients
    noise = jax.random.randint(jax.random.PRNGKey(9), (B, T), 0, V)
    masked = jnp.where(weights > 0, targets, noise)
    again, again_g = jax.jit(jax.value_and_grad(fused, (0, 1)))(head, x, weights, masked)
    assert float(again) == float(got)
    np.testing.assert_array_equal(again_g[0][name], got_g[0][name])
    assert not np.array_equal(masked, targets) and float(jnp.abs(got_g[1]).sum()) > 0
    # the per-token losses and hits of the evaluation path
    nll, correct = chunked_losses(logits_fn, head, x, targets, chunk)
    logits = logits_fn(head, x)
    np.testing.assert_allclose(nll, optax.softmax_cross_entropy_with_integer_labels(
        logits, targets), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(correct, (jnp.argmax(logits, -1) == targets))
    hits = fused_loss(logits_fn, chunk, head, x, targets, weights)[1]
    assert float(hits) == float(jnp.sum(correct * weights))


@pytest.mark.parametrize("tied", [pytest.param(True, marks=pytest.mark.slow), False])
def test_model_loss_gradients_equal_the_full_logits_ones(tied):
    cfg = ModelConfig(architecture="LlamaForCausalLM", vocab_size=64, hidden_size=16,
                      intermediate_size=24, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=4, tie_word_embeddings=tied)
    params = Transformer(cfg, rngs=nnx.Rngs(1)).params()
    _, targets, weights, _ = _data(1)
    tokens = jax.random.randint(jax.random.PRNGKey(3), (B, T), 0, cfg.vocab_size)
    targets = targets % cfg.vocab_size
    segment_ids = jnp.ones((B, T), jnp.int32).at[1, 7:].set(2)
    batch = dict(tokens=tokens, targets=targets, segment_ids=segment_ids, weights=weights)
    tcfg = dataclasses.replace(TrainConfig(), loss_chunk=6)

    def reference(p):
        logits, _ = forward(cfg, p, tokens, segment_ids=segment_ids)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.sum(nll * weights)

    want, want_g = jax.jit(jax.value_and_grad(reference))(params)
    (got, _), got_g = jax.jit(jax.value_and_grad(
        lambda p: _sums(cfg, tcfg, None, p, batch), has_aux=True))(params)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert set(got_g) == set(params)
    for name in params:
        np.testing.assert_allclose(got_g[name], want_g[name], rtol=1e-4, atol=1e-7,
                                   err_msg=name)


@pytest.mark.slow
def test_auto_remat_is_dots_on_cpu_with_the_gradients_of_no_remat():
    # "auto" recomputes from the saved matmul outputs on CPU (faster there than saving every
    # residual); what it computes must not change, to the bit
    assert jax.default_backend() == "cpu" and resolve_remat("auto") == "dots"
    assert resolve_remat("full") == "full"
    cfg = ModelConfig(architecture="LlamaForCausalLM", vocab_size=64, hidden_size=16,
                      intermediate_size=24, num_layers=3, num_heads=4, num_kv_heads=2,
                      head_dim=4)
    params = Transformer(cfg, rngs=nnx.Rngs(2)).params()
    _, targets, weights, _ = _data(2)
    tokens = jax.random.randint(jax.random.PRNGKey(4), (B, T), 0, cfg.vocab_size)
    batch = dict(tokens=tokens, targets=targets % cfg.vocab_size, weights=weights,
                 segment_ids=jnp.ones((B, T), jnp.int32).at[0, 5:].set(2))
    grads, lowered = {}, {}
    for remat in ("none", "auto"):
        tcfg = TrainConfig(remat=remat)
        fn = jax.jit(jax.grad(lambda p, tcfg=tcfg: _sums(cfg, tcfg, None, p, batch)[0]))
        lowered[remat] = fn.lower(params).as_text()
        grads[remat] = fn(params)
    # "auto" does rematerialise (its recomputation sits behind optimization barriers; the
    # logits of few rows on CPU have one of their own: `matmul_out_in`)
    barriers = {k: v.count("optimization_barrier") for k, v in lowered.items()}
    assert barriers["auto"] > barriers["none"], barriers
    for name in params:
        np.testing.assert_array_equal(grads["auto"][name], grads["none"][name], err_msg=name)


def _packed_answers(B=4, T=40, seed=0):
    """A packed batch shaped like distillation data: examples of 6-14 tokens whose last 1-3
    targets carry loss (prompts long, answers short)."""
    rng = np.random.default_rng(seed)
    seg = np.zeros((B, T), np.int32)
    w = np.zeros((B, T), np.float32)
    for b in range(B):
        at, s = 0, 1
        while at < T - 3:
            n = min(int(rng.integers(6, 15)), T - at)
            a = int(rng.integers(1, 4))
            seg[b, at:at + n], w[b, at + n - 1 - a:at + n - 1] = s, 1
            at, s = at + n, s + 1
    return dict(tokens=rng.integers(0, 64, (B, T)).astype(np.int32),
                targets=rng.integers(0, 64, (B, T)).astype(np.int32), segment_ids=seg, weights=w)


TINY = ModelConfig(architecture="LlamaForCausalLM", vocab_size=64, hidden_size=16,
                   intermediate_size=24, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=4)


def _assert_close(got, want, tol=1e-6):
    """Equal up to `tol` of the largest magnitude (the loss; each gradient array)."""
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert np.abs(g - w).max() <= tol * np.abs(w).max(), name


@pytest.mark.parametrize("chunk", [0, 8, 1000])
def test_packed_answer_only_loss_equals_the_full_logits_loss(chunk):
    # the head scores only the loss positions: loss and gradients as with every position's
    # logits, to 1e-6 (of the largest gradient entry)
    params = Transformer(TINY, rngs=nnx.Rngs(1)).params()
    batch = _packed_answers()
    tokens, targets, seg, w = (batch[k] for k in ("tokens", "targets", "segment_ids", "weights"))

    def reference(p):
        logits, _ = forward(TINY, p, tokens, segment_ids=seg)
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, targets) * w)

    want, want_g = jax.jit(jax.value_and_grad(reference))(params)
    tcfg = TrainConfig(loss_chunk=chunk, remat="none")
    (got, _), got_g = jax.jit(jax.value_and_grad(
        lambda p: _sums(TINY, tcfg, None, p, batch), has_aux=True))(params)
    _assert_close({"loss": got, **got_g}, {"loss": want, **want_g})


def test_the_head_runs_on_chunks_of_loss_positions_only():
    x, targets, _, heads = _data(3)
    weights = jnp.zeros((B, T)).at[0, 3].set(1.0).at[0, 9].set(1.0).at[1, 0].set(1.0)
    calls = []

    def logits_fn(head, x):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.einsum("...d,vd->...v", x, head["embed"])

    head = {"embed": heads["embed"]}
    fused = jax.jit(lambda h, x: fused_loss(logits_fn, 2, h, x, targets, weights)[0])
    jax.block_until_ready(jax.grad(fused, (0, 1))(head, x))
    # 1 position per row and chunk; row 0 has the most loss positions: 2 of T = 11 positions
    assert len(calls) == 2
    calls.clear()
    jax.block_until_ready(fused(head, x))
    assert len(calls) == 2
    calls.clear()
    jax.block_until_ready(jax.jit(lambda h, x: fused_loss(logits_fn, 2, h, x, targets,
                                                          jnp.zeros((B, T)))[0])(head, x))
    assert not calls  # no loss token: no chunk at all


@pytest.mark.parametrize("counts,tokens", [
    ((15, 3), [40]),  # no whole chunk: a last one of 20 positions per row (sizes 40, 20, 10)
    ((5, 0), [20]),  # of 10, the smallest size
    ((55, 1), [80, 40]),  # one whole chunk of 40, then 15 left: 20
    ((40, 2), [80]),  # exactly one chunk: no last one
    ((100, 7), [80, 80, 40]),  # every position: 40 + 40 + 20
    ((0, 0), []),
])
def test_a_last_partial_chunk_takes_the_smallest_size_that_holds_it(counts, tokens):
    Bt, Tt = 2, 100
    k = jax.random.split(jax.random.PRNGKey(5), 4)
    x = jax.random.normal(k[0], (Bt, Tt, D))
    targets = jax.random.randint(k[1], (Bt, Tt), 0, V)
    weights = np.zeros((Bt, Tt), np.float32)
    rng = np.random.default_rng(sum(counts))
    for r, n in enumerate(counts):  # scattered positions of random positive weight
        weights[r, rng.choice(Tt, n, replace=False)] = rng.uniform(0.5, 2.0, n)
    head = {"embed": 0.5 * jax.random.normal(k[2], (V, D))}
    calls = []

    def logits_fn(head, x):
        jax.debug.callback(lambda n=x.shape[0]: calls.append(n))
        return jnp.einsum("...d,vd->...v", x, head["embed"])

    def reference(head, x):
        nll = optax.softmax_cross_entropy_with_integer_labels(logits_fn(head, x), targets)
        return jnp.sum(nll * weights)

    want, want_g = jax.jit(jax.value_and_grad(reference, (0, 1)))(head, x)
    jax.effects_barrier()
    calls.clear()
    got, got_g = jax.jit(jax.value_and_grad(
        lambda h, x: fused_loss(logits_fn, 80, h, x, targets, jnp.asarray(weights))[0],
        (0, 1)))(head, x)
    jax.effects_barrier()
    assert sorted(calls, reverse=True) == tokens  # tokens through the head, chunk by chunk
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_a_chunk_of_whole_rows_computes_the_head_only_in_the_chosen_branch():
    """Rows no longer than a chunk: the head runs once, on the smallest size that holds the
    loss positions. A loop of at most one trip would be loop-invariant (its slice start clamps
    to 0), and XLA would hoist its body, computing the head on every position, unconditionally,
    beside the chosen branch."""
    Bt, Tt, Vt = 4, 48, 1000  # a chunk of 1024 tokens holds the 4 rows whole
    k = jax.random.split(jax.random.PRNGKey(7), 3)
    x = jax.random.normal(k[0], (Bt, Tt, D))
    targets = jax.random.randint(k[1], (Bt, Tt), 0, Vt)
    weights = jnp.zeros((Bt, Tt)).at[:, -10:-1].set(1.0)  # 9 answer positions a row
    head = {"embed": 0.5 * jax.random.normal(k[2], (Vt, D))}
    logits_fn = lambda h, x: jnp.einsum("...d,vd->...v", x, h["embed"])
    # weights as an argument: constants would let XLA pick the branch at compile time
    grad = jax.jit(jax.grad(lambda h, x, w: fused_loss(logits_fn, 1024, h, x, targets, w)[0],
                            (0, 1)))
    hlo = grad.lower(head, x, weights).compile().as_text()
    entry = hlo[hlo.index("\nENTRY "):]
    entry = entry[:entry.index("\n}")]
    # the head's logits over all B*T positions: in a branch only, never in the entry computation
    assert f"f32[{Bt * Tt},{Vt}]" in hlo
    assert f"f32[{Bt * Tt},{Vt}]" not in entry
    assert " while(" not in entry
    want = jax.grad(lambda h, x: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
        logits_fn(h, x), targets) * weights), (0, 1))(head, x)
    for g, w in zip(jax.tree.leaves(grad(head, x, weights)), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_sharded_loss_and_gradients_equal_one_device():
    from s2jax.models.params import param_shardings
    from s2jax.parallel.sharding import make_mesh
    from s2jax.train.step import batch_sharding

    params = Transformer(TINY, rngs=nnx.Rngs(2)).params()
    batch = _packed_answers(B=8, T=24, seed=1)
    tcfg = TrainConfig(loss_chunk=16, remat="none")
    results = []
    for mesh in (make_mesh(devices=jax.devices()[:1]), make_mesh(data=2, fsdp=2, tensor=2)):
        p = jax.device_put(params, param_shardings(TINY, mesh))
        b = jax.device_put(batch, batch_sharding(mesh, (8, 24)))
        fn = jax.jit(jax.value_and_grad(lambda p, b, mesh=mesh: _sums(TINY, tcfg, mesh, p, b),
                                        has_aux=True))
        (loss, hits), grads = fn(p, b)
        results.append({"loss": loss, "hits": hits, **grads})
    assert len(results[1]["embed"].sharding.device_set) == 8
    _assert_close(results[1], results[0])
