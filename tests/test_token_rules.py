"""Sampling methods on constructed logits: never a token outside the allowed set."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2jax.core.text_generator import SamplingParams
from s2jax.sampling.token_rules import (
    ARGMAX_BLOCK,
    TOP_K_BLOCK,
    SamplingMethod,
    argmax,
    row_keys,
    top_k,
)

# probabilities (temperature 1) of 8 tokens, in a shuffled vocabulary order
PROBS = np.array([0.30, 0.22, 0.16, 0.12, 0.09, 0.06, 0.03, 0.02])
PERM = np.array([5, 0, 7, 2, 6, 1, 4, 3])  # token PERM[r] has the r-th largest probability
LOGITS = np.empty(8, np.float32)
LOGITS[PERM] = np.log(PROBS)


def _allowed(top_k, top_p, min_p, temperature):
    """The tokens each filter keeps, by plain numpy on the sorted probabilities."""
    p = PROBS ** (1 / temperature)
    p = p / p.sum()
    ranks = np.arange(8)
    keep = ranks < (top_k or 8)
    pk = np.where(keep, p, 0) / np.where(keep, p, 0).sum()
    if top_p < 1:
        before = np.cumsum(pk) - pk
        keep &= before < top_p
    if min_p > 0:
        pp = np.where(keep, p, 0)
        keep &= pp >= min_p * pp.max()
    return set(PERM[keep].tolist())


CASES = [  # (top_k, top_p, min_p, temperature)
    (3, 1.0, 0.0, 1.0), (0, 0.6, 0.0, 1.0), (0, 1.0, 0.35, 1.0), (5, 0.7, 0.0, 1.0),
    (0, 0.9, 0.2, 1.0), (6, 0.95, 0.1, 0.7), (0, 1.0, 0.0, 1.0), (1, 1.0, 0.0, 2.0),
]


@pytest.mark.parametrize("top_k,top_p,min_p,temperature", CASES)
def test_filters_never_emit_outside_the_allowed_set(top_k, top_p, min_p, temperature):
    allowed = _allowed(top_k, top_p, min_p, temperature)
    assert 0 < len(allowed) <= 8
    method = SamplingMethod(temperature, top_k, top_p, min_p)
    n = 4000
    logits = jnp.broadcast_to(jnp.asarray(LOGITS), (n, 8))
    keys = row_keys(jnp.int32(0), jnp.zeros(n, jnp.int32), jnp.zeros(n, jnp.int32),
                    jnp.arange(n))
    got = np.asarray(jax.jit(method)(logits, keys))
    seen = set(got.tolist())
    assert seen <= allowed, (seen - allowed, allowed)
    assert seen == allowed  # and the filter is not stricter than asked
    if top_k == 0 and top_p == 1.0 and min_p == 0.0:  # plain sampling follows the softmax
        freq = np.bincount(got, minlength=8)[PERM] / n
        np.testing.assert_allclose(freq, PROBS, atol=0.03)


def test_boundary_of_top_p_keeps_the_token_that_reaches_it():
    """top_p = 0.52 needs the first two tokens (0.30 + 0.22 = 0.52 covers it, 0.30 does not)."""
    assert _allowed(0, 0.52, 0, 1.0) == {5, 0}
    assert _allowed(0, 0.30, 0, 1.0) == {5}


def test_temperature_zero_is_greedy():
    method = SamplingMethod.from_params(SamplingParams(temperature=0, top_k=4, top_p=0.3))
    assert method == SamplingMethod() and method.greedy
    logits = jax.random.normal(jax.random.key(0), (64, 50))
    np.testing.assert_array_equal(method(logits, None), np.argmax(np.asarray(logits), -1))


def test_keys_depend_on_prompt_sample_and_step_only():
    k = lambda p, s, t: jax.random.key_data(row_keys(jnp.int32(3), jnp.array([p]),
                                                     jnp.array([s]), jnp.array([t])))[0]
    batch = jax.random.key_data(row_keys(jnp.int32(3), jnp.array([4, 0, 2]),
                                         jnp.array([1, 1, 0]), jnp.array([5, 5, 0])))
    np.testing.assert_array_equal(batch[0], k(4, 1, 5))
    np.testing.assert_array_equal(batch[2], k(2, 0, 0))
    assert not np.array_equal(k(4, 1, 5), k(4, 1, 6))
    assert not np.array_equal(k(4, 1, 5), k(4, 0, 5))


@pytest.mark.parametrize("vocab", [7, ARGMAX_BLOCK * 3, ARGMAX_BLOCK * 3 + 5])
def test_blocked_argmax_equals_jnp_argmax(vocab):
    x = np.random.default_rng(vocab).standard_normal((9, vocab)).astype(np.float32)
    x[1, :] = -np.inf  # all -inf: index 0
    x[2, [3, vocab - 1]] = 50.0  # ties: the first
    x[3, [vocab // 2, vocab - 2]] = np.inf
    x[4, :] = 0.0
    x[5, vocab - 1] = 1e30  # the last entry, in the padded block
    assert argmax(jnp.asarray(x)).tolist() == jnp.argmax(jnp.asarray(x), axis=-1).tolist()


@pytest.mark.parametrize("vocab,k", [(TOP_K_BLOCK * 4 * 5 - 3, 5), (TOP_K_BLOCK * 4 * 5, 5),
                                     (1000, 40)])
def test_two_pass_top_k_equals_lax_top_k(vocab, k):
    """Values and ids equal `lax.top_k`'s, ties (within and across blocks) in index order; the
    first two vocabularies take the two-pass path, the last one pass."""
    x = np.random.default_rng(vocab).standard_normal((6, vocab)).astype(np.float32)
    x[1, :] = 0.0  # all tied: the first k ids
    x[2, ::7] = 9.0  # more ties at the top than k, spread over many blocks
    x[3, vocab - 1] = 50.0  # the last entry, in the padded block
    x[4, :k + 3] = -np.inf
    got, want = top_k(jnp.asarray(x), k), jax.lax.top_k(jnp.asarray(x), k)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def test_sampling_draws_as_jax_random_categorical():
    """The Gumbel-max draw with the blocked argmax is `jax.random.categorical`'s, key for key."""
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((16, 1000)), jnp.float32)
    keys = row_keys(jnp.int32(3), jnp.arange(16), jnp.zeros(16, jnp.int32), jnp.ones(16, jnp.int32))
    method = SamplingMethod(temperature=1.0)
    expected = jax.vmap(jax.random.categorical)(keys, logits)
    assert method(logits, keys).tolist() == expected.tolist()
