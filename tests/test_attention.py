"""No-cache attention: `jax.nn.dot_product_attention` equals the einsum reference on CPU."""

import functools
import re
from itertools import pairwise

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


@pytest.mark.parametrize("softcap,reach", [(None, None), (5.0, None), (None, 150)])
def test_causal_blocks_on_cpu_equal_the_whole_product(softcap, reach):
    from s2jax.models.attention import CAUSAL_BLOCK, attention, causal_blocks

    B, T, N, K, H = 2, 2 * CAUSAL_BLOCK + 37, 4, 2, 8
    bounds = causal_blocks(T)
    assert bounds[0] == 0 and bounds[-1] == T and len(bounds) == 4  # 3 blocks of 76-77
    assert max(b - a for a, b in pairwise(bounds)) <= CAUSAL_BLOCK
    assert causal_blocks(CAUSAL_BLOCK) == [0, CAUSAL_BLOCK]
    ks = jax.random.split(jax.random.PRNGKey(1), 4)
    q = jax.random.normal(ks[0], (B, T, N, H))
    k, v = (jax.random.normal(key, (B, T, K, H)) for key in ks[1:3])
    # row 0 packs three examples across the block bounds, with a sliding window of 50; row 1 is
    # one example then padding (segment 0), whose queries may attend to nothing. Its 150 tokens
    # are the longest segment: `reach`=150 holds
    seg = jnp.array([[1] * 90 + [2] * 100 + [3] * (T - 190), [1] * 150 + [0] * (T - 150)])
    idx = jnp.arange(T)
    window = jnp.array([50, T])[:, None, None]
    mask = ((idx[:, None] >= idx[None, :]) & (seg[:, :, None] == seg[:, None, :])
            & (seg[:, None, :] != 0) & (idx[:, None] - idx[None, :] < window))
    real = np.asarray(seg != 0)[:, :, None, None]
    do = jax.random.normal(ks[3], (B, T, N, H)) * real

    def run(f):
        def forward_and_back(q, k, v, do):
            out, vjp = jax.vjp(f, q, k, v)
            return out, vjp(do)

        return jax.jit(forward_and_back)(q, k, v, do)

    got, got_grads = run(lambda q, k, v: self_attention(q, k, v, mask, scale=0.3, causal=True,
                                                        logit_softcap=softcap, reach=reach))
    want, want_grads = run(lambda q, k, v: attention(
        q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask, scale=0.3,
        logit_softcap=softcap))
    np.testing.assert_allclose(got * real, want * real, rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(want_grads[2]).sum()) > 0
    # the blocks above the diagonal are not computed: 3 blocks of two products each, the scores
    # of each over the keys up to its last query ([B, K, G x block, keys]), from the first
    # query's reach
    hlo = jax.jit(lambda q, k, v: self_attention(q, k, v, mask, causal=True,
                                                 reach=reach)).lower(q, k, v).as_text()
    scores = re.findall(r"dot_general.*-> tensor<2x2x(\d+)x(\d+)xf32>", hlo)
    assert len(scores) == 6
    first = (lambda a: 0) if reach is None else (lambda a: max(0, a - reach + 1))
    assert sorted({(int(m) // 2, int(s)) for m, s in scores if int(s) != H}) == [
        (b - a, b - first(a)) for a, b in pairwise(bounds)]
    if reach:  # a reach that does not hold drops keys some queries attend to
        short, _ = run(lambda q, k, v: self_attention(q, k, v, mask, scale=0.3, causal=True,
                                                      reach=40))
        assert not np.allclose(short * real, want * real, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("S,H,dtype", [(40, 8, jnp.float32),  # one chunk of slots (40 = 2 x 20)
                                       (128, 64, jnp.float32),  # 4 x 32 slots, 2 x 32 head dims
                                       (96, 80, jnp.bfloat16)])  # a 16-bit cache
def test_decode_attention_over_keys_last_equals_the_einsum_product(S, H, dtype):
    """A decode step's attention over a keys-last cache ([B, K, H, S]), which on CPU sums
    elementwise products in chunks, equals the batched einsum over [B, K, S, H] keys."""
    from s2jax.models.attention import _decode_products, attention

    B, N, K = 3, 6, 2
    ks = jax.random.split(jax.random.PRNGKey(2), 3)
    q = jax.random.normal(ks[0], (B, 1, N, H)).astype(dtype)
    k, v = (jax.random.normal(key, (B, K, S, H)).astype(dtype) for key in ks[1:])
    pos = jnp.array([S - 1, 5, S // 2])
    mask = (jnp.arange(S)[None, :] <= pos[:, None])[:, None, :]  # [B, 1, S]
    want = attention(q, k, v, mask, scale=0.2, logit_softcap=30.0)
    step = jax.jit(functools.partial(attention, scale=0.2, logit_softcap=30.0, keys_last=True))
    got = step(q, k.swapaxes(2, 3), v, mask)
    # no batched GEMM: XLA:CPU runs those [G, X] x [X, Y] products on one core
    assert "dot_general" not in step.lower(q, k.swapaxes(2, 3), v, mask).as_text()
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=tol, atol=tol)
    # the chunked sum itself, against numpy in float64
    a, b = jax.random.normal(ks[0], (B, K, 3, S)), jax.random.normal(ks[1], (B, K, S, H))
    np.testing.assert_allclose(
        _decode_products(a, b),
        np.einsum("bkgx,bkxy->bkgy", np.asarray(a, np.float64), np.asarray(b, np.float64)),
        rtol=1e-5, atol=1e-4)


def test_decode_attention_benchmark_runs_and_agrees(tmp_path):
    """bench/decode_attention.py at a tiny size: both forms run and give the same output."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "decode_attention.py"
    out = subprocess.run([sys.executable, str(script), "--slots", "48", "--rows", "2",
                          "--layers", "2", "--repeats", "1"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("  48 slots: matmul"))
    assert float(re.search(r"max difference ([0-9.e+-]+)", line).group(1)) < 1e-5


def test_step_reach_rounds_up_and_drops_a_reach_that_saves_little():
    from s2jax.models.attention import causal_blocks, step_reach

    for longest in range(1, 700):
        for T in (128, 336, 512, 1024):
            reach = step_reach(longest, T)
            if reach is None:
                continue
            # never below the longest example; a multiple of 8, at most a quarter (or 7) above
            assert longest <= reach < longest + max(8, longest / 4) and reach % 8 == 0
            blocks = list(pairwise(causal_blocks(T)))
            skipped = sum((b - a) * max(0, a - reach + 1) for a, b in blocks)
            assert 4 * skipped >= sum((b - a) * b for a, b in blocks)
    # similar sets share one compiled step; a reach that skips nothing compiles none
    assert {step_reach(n, 512) for n in range(145, 161)} == {160}
    assert step_reach(148, 512) == 160 and step_reach(148, 256) is None
    assert step_reach(330, 336) is None and step_reach(40, 128) is None
