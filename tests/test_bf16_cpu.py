"""bf16 on XLA:CPU: products accumulated in fp32 (from bf16 operands on a CPU with bf16 dot
products, from fp32 ones elsewhere), layer scans that slice bits rather than an fp32 copy of the
model, rope's sin and cos once per forward, and a bf16 KV cache written without an fp32 round
trip."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2jax
from s2jax.core.text_generator import SamplingParams
from s2jax.models import projection
from s2jax.models.attention import attention
from s2jax.models.cache import KVCache
from s2jax.models.params import split_layers
from s2jax.models.projection import project
from s2jax.models.transformer import forward
from s2jax.sampling import Sampler, loop

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's choices")


def _bf16(shape, seed):
    return jax.random.normal(jax.random.PRNGKey(seed), shape).astype(jnp.bfloat16)


@cpu_only
@pytest.mark.parametrize("bf16_dot", [True, False])
def test_bf16_projection_is_the_fp32_product_rounded_once(monkeypatch, bf16_dot):
    monkeypatch.setattr(projection, "cpu_bf16_dot", lambda: bf16_dot)
    x, w = _bf16((4, 7, 576), 0), _bf16((576, 96), 1)
    got = project({"up": w}, "up", "btd,df->btf", x, jnp.bfloat16)
    assert got.dtype == jnp.bfloat16
    exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    want = np.asarray(jnp.asarray(exact, jnp.float32).astype(jnp.bfloat16), np.float64)
    # rounded once from an fp32 sum: equal to the exact product rounded, but for ties of order
    assert (np.asarray(got, np.float64) == want).mean() > 0.98
    ulp = np.abs(want) * 2.0**-7
    assert (np.abs(np.asarray(got, np.float64) - want) <= ulp + 1e-30).all()
    # the program asks for an fp32 product: of bf16 operands where the CPU has bf16 dot
    # products, of fp32 ones where it has not
    text = jax.jit(lambda x, w: project({"up": w}, "up", "btd,df->btf", x, jnp.bfloat16)
                   ).lower(x, w).as_text()
    operand = "bf16" if bf16_dot else "f32"
    assert re.search(rf"dot_general.*tensor<28x576x{operand}>, tensor<576x96x{operand}>\) -> "
                     r"tensor<28x96xf32>", text), text


@cpu_only
@pytest.mark.parametrize("bf16_dot", [True, False])
def test_bf16_attention_products_follow_the_cpu(monkeypatch, bf16_dot):
    """Both attention products take fp32 operands on a CPU without bf16 dot products, and the
    output agrees with fp32 attention over the same bf16 inputs either way."""
    monkeypatch.setattr(projection, "cpu_bf16_dot", lambda: bf16_dot)
    q, k, v = _bf16((2, 5, 4, 16), 2), _bf16((2, 2, 9, 16), 3), _bf16((2, 2, 9, 16), 4)
    mask = jnp.tril(jnp.ones((5, 9), bool), 4)[None].repeat(2, 0)
    got = attention(q, k, v, mask)
    assert got.dtype == jnp.bfloat16
    want = attention(*(a.astype(jnp.float32) for a in (q, k, v)), mask)
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), atol=0.03)
    text = jax.jit(lambda q, k, v: attention(q, k, v, mask)).lower(q, k, v).as_text()
    dots = re.findall(r"dot_general.*?\) -> tensor<[^>]*>", text)
    assert len(dots) == 2, dots
    operands = ["bf16" in d.split("->")[0] for d in dots]
    assert operands == [bf16_dot] * 2, dots


def test_cpu_bf16_dot_reads_the_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.delenv("S2JAX_CPU_BF16_DOT", raising=False)
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(projection, "CPUINFO", str(info))
    cases = {"flags\t\t: fpu sse avx2 fma\n": False,  # AVX2 only (Zen 3)
             "flags\t\t: fpu avx512f avx512_bf16 avx2\n": True,  # Zen 4, Cooper Lake
             "flags\t\t: fpu amx_bf16 amx_tile\n": True,  # Sapphire Rapids
             "Features\t: fp asimd bf16 i8mm\n": True,  # Arm (Graviton 3, Neoverse V1)
             "Features\t: fp asimd sve\n": False}
    try:
        for text, want in cases.items():
            info.write_text("processor\t: 0\n" + text)
            projection.cpu_bf16_dot.cache_clear()
            assert projection.cpu_bf16_dot() is want, text
        info.unlink()  # no such file: counted as without
        projection.cpu_bf16_dot.cache_clear()
        assert projection.cpu_bf16_dot() is False
        monkeypatch.setenv("S2JAX_CPU_BF16_DOT", "1")  # the override wins
        projection.cpu_bf16_dot.cache_clear()
        assert projection.cpu_bf16_dot() is True
    finally:  # the next test reads this machine's own answer
        monkeypatch.undo()
        projection.cpu_bf16_dot.cache_clear()


def _with_rows_reference(cache, dest, prompts, src):
    """The scatter `KVCache.with_rows` replaced, in numpy."""
    out = [np.array(c, np.float32) for c in (cache.k, cache.v)]
    for d, s in zip(np.asarray(dest), np.asarray(src), strict=True):
        if d < out[0].shape[1]:
            out[0][:, d, ..., :prompts.slots] = np.asarray(prompts.k[:, s], np.float32)
            out[1][:, d, :, :prompts.slots] = np.asarray(prompts.v[:, s], np.float32)
    return out


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("split", [False, True])
def test_with_rows_starts_each_destination_row_from_its_prompt(hf_checkpoint, dtype, split):
    model, _ = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    cfg = model.config
    rand = lambda seed, rows, slots, part: jax.random.normal(
        jax.random.PRNGKey(seed), KVCache.shapes(cfg, rows, slots)[part]).astype(dtype)
    cache = KVCache(rand(0, 6, 16, 0), rand(1, 6, 16, 1))
    prompts = KVCache(rand(2, 3, 8, 0), rand(3, 3, 8, 1))
    dest = jnp.asarray([4, 0, 6, 2], jnp.int32)  # 6: out of range, dropped
    src = jnp.asarray([1, 2, 0, 1], jnp.int32)
    want = _with_rows_reference(cache, dest, prompts, src)
    got = (cache.split(16) if split else cache).with_rows(dest, prompts, src)
    for g, w in zip((got.k, got.v), want, strict=True):
        g = np.stack([np.asarray(x, np.float32) for x in g]) if split else np.asarray(g, np.float32)
        np.testing.assert_array_equal(g, w)  # moved, not computed: exact
    # and the window copy out and back is exact too
    part = got.first_slots(8)
    back = got.with_first_slots(part)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(got), strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_fp32_products_and_other_platforms_keep_their_dtype(monkeypatch):
    assert not projection.xla_cpu_16bit(jnp.float32)
    assert not projection.xla_cpu_16bit(jnp.uint16)  # bits are not floats
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not projection.xla_cpu_16bit(jnp.bfloat16)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert projection.xla_cpu_16bit(jnp.bfloat16)


def _fp32_arrays(hlo: str) -> set[str]:
    return set(re.findall(r"f32\[([\d,]+)\]", hlo))


@cpu_only
def test_bf16_layer_scan_holds_no_fp32_copy_of_weights_or_cache(hf_checkpoint, monkeypatch):
    """XLA:CPU would convert each stacked bf16 weight (and the stacked cache, at every layer, and
    the embedding table) to fp32 to slice or gather it; the scan slices their bits instead.

    With bf16 dot products: without them each layer's weights are converted for its products
    after the slice, which XLA:CPU unrolls into conversions of whole stacked weights for this
    2-layer model's scan (not for SmolLM2-135M's 30 layers)."""
    monkeypatch.setattr(projection, "cpu_bf16_dot", lambda: True)
    model, _ = s2jax.load(hf_checkpoint("llama3"), dtype="bfloat16")
    cfg, params = model.config, model.params()
    stacked = {",".join(map(str, v.shape)) for k, v in params.items() if k.startswith("layers.")
               and v.ndim >= 3}
    # 24 slots: no other [L, B, K, S, H] array (attention scores are [B, K, G, T, S])
    tokens, lengths = jnp.ones((2, 24), jnp.int32), jnp.asarray([24, 9], jnp.int32)
    train = jax.jit(lambda p, t: forward(cfg, p, t, dtype=jnp.bfloat16)[0]).lower(
        params, tokens).compile().as_text()
    assert not _fp32_arrays(train) & stacked, _fp32_arrays(train) & stacked
    # nor of the embedding table, which the tokens' rows are gathered from
    assert ",".join(map(str, params["embed"].shape)) not in _fp32_arrays(train)
    prefill = jax.jit(lambda p, t, n: loop.prefill_cache(cfg, jnp.bfloat16, p, t, n,
                                                         jnp.bfloat16)).lower(
        params, tokens, lengths).compile().as_text()
    cache = ",".join(map(str, (cfg.num_layers, 2, cfg.num_kv_heads, 24, cfg.head_dim)))
    assert not _fp32_arrays(prefill) & (stacked | {cache})
    # and the scan's cache holds what the unrolled forward over per-layer buffers writes
    positions = jnp.broadcast_to(jnp.arange(16), (2, 16))
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 16), 0, cfg.vocab_size)
    empty = KVCache.zeros(cfg, 2, 16, jnp.bfloat16)
    logits, scan = forward(cfg, params, tokens, positions, cache=empty, dtype=jnp.bfloat16)
    want, unrolled = forward(cfg, split_layers(params), tokens, positions,
                             cache=empty.split(16), dtype=jnp.bfloat16)
    assert scan.k.dtype == jnp.bfloat16 and float(jnp.abs(scan.k).max()) > 0
    for got, ref in ((scan.k, unrolled.k), (scan.v, unrolled.v)):
        np.testing.assert_allclose(np.asarray(got, np.float32),
                                   np.asarray(jnp.stack(ref), np.float32), rtol=0.02, atol=0.02)
    # logits: bf16 rounding differs with the fusions (measured <= 0.06 of values ~1.5); a slice
    # of the wrong layer or bits read as the wrong type would be O(1)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(want), atol=0.15)


@pytest.mark.parametrize("family,tables", [("llama3", 1), ("gemma3", 2)])
def test_rope_sin_and_cos_are_computed_once_per_distinct_table(hf_checkpoint, family, tables):
    model, _ = s2jax.load(hf_checkpoint(family), dtype="float32")
    text = jax.jit(lambda p, t: forward(model.config, p, t)[0]).lower(
        model.params(), jnp.ones((1, 8), jnp.int32)).as_text()
    assert len(re.findall(r"stablehlo.sine", text)) == tables
    assert len(re.findall(r"stablehlo.cosine", text)) == tables


@cpu_only
@pytest.mark.parametrize("unroll", [True, False])
def test_bf16_greedy_tokens_do_not_depend_on_how_the_cache_is_written(hf_checkpoint, unroll):
    """Keys are rounded to bf16 before they are stored and read back as bf16, so a bf16 cache
    (written by a select per decode step unrolled, through its bits under the layer scan) and an
    fp32 one (written by a plain scatter) hold the same values."""
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="bfloat16")
    rng = np.random.default_rng(0)
    prompts = [rng.integers(8, model.config.vocab_size, size=n).tolist() for n in (3, 11, 6)]
    params = SamplingParams(max_new_tokens=12)
    default = Sampler(model, tok, max_batch=4, unroll_layers=unroll)
    wide = Sampler(model, tok, max_batch=4, unroll_layers=unroll, cache_dtype="float32")
    assert default.cache_dtype == jnp.bfloat16 and wide.cache_dtype == jnp.float32
    got = [[t for _, t in row] for row in default.generate_ids(prompts, params)]
    assert got == [[t for _, t in row] for row in wide.generate_ids(prompts, params)]
    assert all(len(t) == 12 for t in sum(got, []))  # no EOS ids in the tiny config
