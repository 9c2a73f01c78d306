"""The sampler: greedy parity with `transformers`, shared prefills, stops, sharding, buckets."""

import json
import shutil

import jax
import numpy as np
import pytest
import torch

import s2jax
from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.parallel.sharding import make_mesh
from s2jax.sampling import Sampler, plan_programs
from s2jax.sampling.chat import encode_prompts
from s2jax.testing.checkpoints import FAMILIES
from tests.hf_fixtures import load_reference

LENGTHS = [3, 14, 9, 6]  # prompts of different lengths; longer than the sliding windows


def _prompts(vocab: int, lengths=LENGTHS, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(8, vocab, size=n).tolist() for n in lengths]


def _hf_greedy(directory, prompts, max_new_tokens):
    ref = load_reference(directory)
    out = []
    with torch.no_grad():
        for ids in prompts:  # one at a time: no padding in the reference
            x = torch.tensor([ids])
            g = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=0)
            out.append(g[0, len(ids):].tolist())
    return out


def _tokens(results):
    return [[toks for _, toks in row] for row in results]


# one family in the fast tier (-m "not slow"), every family in the full suite
@pytest.mark.parametrize("family", [f if f == "qwen2" else pytest.param(f, marks=pytest.mark.slow)
                                    for f in sorted(FAMILIES)])
def test_greedy_matches_transformers(hf_checkpoint, family):
    """Batched, rows refilled from the queue (2 rows, 4 prompts), the cache window growing
    (64 slots, decoded in windows of 32, 48, 64): still HF greedy."""
    directory = hf_checkpoint(family)
    model, tok = s2jax.load(directory, dtype="float32")
    prompts = _prompts(model.config.vocab_size)
    sampler = Sampler(model, tok, max_batch=2, refill_rows=1)
    params = SamplingParams(max_new_tokens=24)
    ours = sampler.generate_ids(prompts, params)
    assert sampler.plan(LENGTHS, params).cache_len == 64
    assert sum(k[0] == "decode" for k in sampler._programs) >= 2
    ref = _hf_greedy(directory, prompts, 24)
    assert [row[0][1] for row in ours] == ref
    for (sample, _), r in zip((row[0] for row in ours), ref, strict=True):
        assert sample.num_tokens == len(r)
        assert sample.finish_reason == ("stop" if r[-1] in (7,) else "length")
    assert sampler.stats.prefills == 2  # the second pair of prompts refilled the rows


@pytest.mark.slow
def test_temperature_zero_is_greedy_whatever_the_filters(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    sampler = Sampler(model, tok)
    prompts = _prompts(model.config.vocab_size)
    greedy = sampler.generate_ids(prompts, SamplingParams(max_new_tokens=8))
    zero = sampler.generate_ids(prompts, SamplingParams(
        temperature=0.0, top_k=3, top_p=0.5, min_p=0.2, seed=123, n=2, max_new_tokens=8))
    assert all(z == g[0][1] for zs, g in zip(_tokens(zero), greedy, strict=True) for z in zs)


@pytest.mark.slow
def test_shared_prefill_equals_separate_prefills(hf_checkpoint):
    """n samples from one prefill (cache rows copied) == each sample prefilled on its own."""
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    prompts = _prompts(model.config.vocab_size, [5, 12, 3])
    params = SamplingParams(n=4, temperature=1.0, top_k=50, max_new_tokens=12, seed=7)
    shared = Sampler(model, tok, max_batch=16)
    a = _tokens(shared.generate_ids(prompts, params))
    assert shared.stats.prefills == 1
    separate = Sampler(model, tok, max_batch=1)  # one row: every sample is its own prefill
    b = _tokens(separate.generate_ids(prompts, params))
    assert separate.stats.prefills == 12
    assert a == b
    assert len({tuple(t) for row in a for t in row}) > 6  # the samples differ from each other
    static = Sampler(model, tok, max_batch=4, continuous=False)
    assert _tokens(static.generate_ids(prompts, params)) == a
    c = _tokens(shared.generate_ids(prompts, SamplingParams(**{**params.__dict__, "seed": 8})))
    assert c != a


@pytest.mark.slow
def test_continuous_batching_with_mixed_lengths_equals_static(hf_checkpoint, tmp_path):
    """Rows end at different steps (many EOS ids): refills mid-flight and the tail moved to a
    smaller batch give the same samples as static batches and as one row at a time."""
    directory = tmp_path / "ckpt"
    shutil.copytree(hf_checkpoint("llama2"), directory)
    gen = json.loads((directory / "generation_config.json").read_text())
    gen["eos_token_id"] = list(range(8, 320, 6))  # ~1 in 6 tokens ends a row
    (directory / "generation_config.json").write_text(json.dumps(gen))
    model, tok = s2jax.load(directory, dtype="float32")
    prompts = _prompts(model.config.vocab_size, [5, 12, 3, 8, 7])
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=20, seed=2)
    continuous = Sampler(model, tok, max_batch=8, refill_rows=2)
    a = continuous.generate_ids(prompts, params)
    lengths = {s.num_tokens for row in a for s, _ in row}
    assert len(lengths) > 5 and min(lengths) < 5  # rows really end at different steps
    assert continuous.stats.prefills > 2
    assert any(k[0] == "take_rows" for k in continuous._programs)
    static = Sampler(model, tok, max_batch=8, continuous=False)
    assert _tokens(static.generate_ids(prompts, params)) == _tokens(a)
    assert static.stats.decode_steps > continuous.stats.decode_steps
    assert _tokens(Sampler(model, tok, max_batch=1).generate_ids(prompts, params)) == _tokens(a)


@pytest.mark.slow
def test_eos_ids_come_from_generation_config(hf_checkpoint, tmp_path):
    directory = tmp_path / "ckpt"
    shutil.copytree(hf_checkpoint("llama2"), directory)
    model, tok = s2jax.load(directory, dtype="float32")
    prompts = _prompts(model.config.vocab_size, [6])
    params = SamplingParams(max_new_tokens=10)
    (sample, toks), = Sampler(model, tok).generate_ids(prompts, params)[0]
    eos = [t for t in toks[2:6] if t not in toks[:2]][0]  # first occurrence after step 2
    cut = toks.index(eos)
    gen = json.loads((directory / "generation_config.json").read_text())
    gen["eos_token_id"] = [eos, 5]
    (directory / "generation_config.json").write_text(json.dumps(gen))
    model, tok = s2jax.load(directory, dtype="float32")
    (sample, got), = Sampler(model, tok).generate_ids(prompts, params)[0]
    assert got == toks[:cut + 1]
    assert sample.num_tokens == cut + 1 and sample.finish_reason == "stop"
    assert sample.text == tok.decode(toks[:cut], skip_special_tokens=True)  # the default


@pytest.mark.slow
def test_stop_strings_cut_exactly(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("mistral"), dtype="float32")
    prompts = _prompts(model.config.vocab_size, [4, 9])
    free = Sampler(model, tok, keep_special_tokens=True).generate_ids(
        prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=24))
    toks = free[1][1][1]
    assert len(toks) == 24
    stop = tok.decode(toks[9:11], skip_special_tokens=False)  # completed by token 10 at latest
    # refills + stops mid-chunk; texts keep special tokens, so they are exactly the tokens'
    sampler = Sampler(model, tok, stop_check_steps=3, max_batch=2, keep_special_tokens=True)
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=24, stop=(stop, "\x00\x01"))
    got = sampler.generate_ids(prompts, params)
    for row_free, row_got in zip(free, got, strict=True):
        for (_, t), (sample, t2) in zip(row_free, row_got, strict=True):
            full = tok.decode(t, skip_special_tokens=False)
            if stop not in full:
                assert sample.finish_reason == "length" and t2 == t
                continue
            # brute force: the first prefix whose text contains the stop string
            m = next(m for m in range(1, len(t) + 1)
                     if stop in tok.decode(t[:m], skip_special_tokens=False))
            prefix = tok.decode(t[:m], skip_special_tokens=False)
            assert sample.text == prefix[:prefix.find(stop)]
            assert sample.num_tokens == m and sample.finish_reason == "stop"
            assert t2 == t[:m]
    assert got[1][1][0].finish_reason == "stop" and got[1][1][0].num_tokens <= 11


@pytest.mark.slow
def test_sharded_outputs_equal_single_device(hf_checkpoint):
    directory = hf_checkpoint("qwen3")
    params = SamplingParams(n=3, temperature=0.8, top_k=40, max_new_tokens=10, seed=3)
    single, tok = s2jax.load(directory, dtype="float32")
    prompts = _prompts(single.config.vocab_size)
    a = Sampler(single, tok, max_batch=8).generate_ids(prompts, params)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    sharded, _ = s2jax.load(directory, dtype="float32", mesh=mesh)
    sampler = Sampler(sharded, tok, max_batch=8)
    b = sampler.generate_ids(prompts, params)
    assert _tokens(a) == _tokens(b)
    assert sampler.shards == 4 and len(sampler.mesh.devices.flat) == 8
    q = sampler.params["layers.q"]
    assert q.addressable_shards[0].data.size < q.size
    greedy = SamplingParams(max_new_tokens=10)
    assert _tokens(Sampler(single, tok).generate_ids(prompts, greedy)) == \
        _tokens(sampler.generate_ids(prompts, greedy))


@pytest.mark.slow
def test_compile_count_is_bounded_by_the_bucket_plan(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 40, size=24).tolist()
    sampler = Sampler(model, tok, max_batch=8, max_len=128)
    params = SamplingParams(n=2, temperature=1.0, top_k=20, max_new_tokens=8)
    sampler.generate_ids(_prompts(model.config.vocab_size, lengths), params)
    unroll = sampler.unroll_layers  # a tiny model: its layers unrolled, the weights split once
    bound = plan_programs(lengths, 2, 8, max_batch=8, max_len=128, unroll_layers=unroll)
    assert 3 <= sampler.compile_count <= len(bound)
    before = sampler.compile_count
    lengths2 = rng.integers(1, 40, size=24).tolist()
    sampler.generate_ids(_prompts(model.config.vocab_size, lengths2), params)
    assert sampler.compile_count <= len(bound | plan_programs(lengths2, 2, 8, max_batch=8,
                                                              max_len=128, unroll_layers=unroll))
    assert sampler.compile_count - before <= 3
    # 10k prompts of random lengths: a bounded number of programs, whatever the count
    many = np.random.default_rng(0).integers(1, 2000, size=10_000).tolist()
    programs = plan_programs(many, 8, 256, max_batch=64, max_len=4096)
    print(f"10k prompts, lengths 1..2000, n=8: at most {len(programs)} programs")
    # init + 17 decode windows (16..4096) + 27 prompt buckets (16, 24, 32, 40, ..., 1792, 2048)
    # x 7 prefill batches, and for the tail (16 rows): take_rows + 17 decode windows
    assert len(programs) == 1 + 17 + 27 * 7 + 1 + 17


def test_prompt_buckets_waste_at_most_a_fifth_of_a_prefill():
    from s2jax.sampling.buckets import BucketPlan, bucket_at_least

    assert [bucket_at_least(n, 16) for n in (1, 16, 17, 24, 25, 33, 37, 38, 49, 65, 97, 129,
                                             193, 1000)] == [
        16, 16, 24, 24, 32, 40, 40, 40, 56, 80, 112, 160, 224, 1024]
    plan = BucketPlan.make([38], 1, 64, max_batch=32, max_len=2048)
    assert plan.prompt_len(38) == 40 and plan.prompt_len(200) == 128  # capped by the cache
    for n in range(16, 3000):
        b = bucket_at_least(n)
        assert n <= b and b % 8 == 0
        if n > 32:
            assert b - n < b / 5, n
    # four buckets per power of two: the programs a wide spread of lengths can compile
    assert len({bucket_at_least(n) for n in range(257, 513)}) == 4


def test_one_new_token_is_the_prefills_and_runs_no_decode(hf_checkpoint):
    """A call of one new token per prompt takes it at the prefill: the first token of a longer
    call, sampled too, with no decode program and no per-layer copy of the weights."""
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    prompts = _prompts(model.config.vocab_size)
    sampler = Sampler(model, tok, max_batch=4)
    for temperature in (0.0, 0.9):
        params = SamplingParams(n=2, temperature=temperature, max_new_tokens=1, seed=3)
        one = _tokens(sampler.generate_ids(prompts, params))
        assert sampler.stats.decode_calls == 0 and sampler.stats.tokens == 2 * len(prompts)
        assert not any(k[0] in ("decode", "split_layers") for k in sampler._programs)
        longer = _tokens(sampler.generate_ids(prompts, SamplingParams(
            n=2, temperature=temperature, max_new_tokens=5, seed=3)))
        assert one == [[t[:1] for t in row] for row in longer]
        assert sampler.stats.decode_calls > 0
        sampler._programs.clear()


@pytest.mark.slow
def test_layer_scan_decode_equals_unrolled(hf_checkpoint):
    """The decode over stacked weights and cache (the CPU default for larger models) gives the
    tokens of the unrolled one over per-layer buffers, through refills and the tail batch (on
    CPU, the unrolled one multiplies by transposed projections: `out_in_weights`)."""
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    prompts = _prompts(model.config.vocab_size, [3, 9, 5, 17, 2, 6])
    params = SamplingParams(max_new_tokens=20)
    scan = Sampler(model, tok, max_batch=4, unroll_layers=False).generate_ids(prompts, params)
    unrolled = Sampler(model, tok, max_batch=4, unroll_layers=True)
    assert _tokens(scan) == _tokens(unrolled.generate_ids(prompts, params))
    cpu = jax.default_backend() == "cpu"
    assert unrolled._out_in(unrolled.plan([3], params)) == cpu
    assert any(k[0] == "split_layers" and k[-1] == cpu for k in unrolled._programs)
    assert isinstance(unrolled._program("init", (), unrolled.plan([3], params),
                                        None)(0).cache.k, tuple)  # per-layer buffers


@pytest.mark.parametrize("unroll", [False, True])
def test_tpu_cache_layout_samples_the_cpu_layouts_tokens(hf_checkpoint, monkeypatch, unroll):
    """A KV cache with keys [B, K, S, H] (the TPU layout, `KVCache.keys_last` False) gives the
    tokens of the slots-last keys CPUs and GPUs keep, through refills, windows and both decode
    forms (scanned and unrolled)."""
    from s2jax.sampling import loop

    model, tok = s2jax.load(hf_checkpoint("gemma2"), dtype="float32")  # soft-capped scores
    prompts = _prompts(model.config.vocab_size, [3, 30, 5, 17, 2, 6])
    params = SamplingParams(n=2, temperature=0.8, top_k=20, max_new_tokens=24, seed=4)
    sampler = lambda: Sampler(model, tok, max_batch=4, max_len=64, unroll_layers=unroll)
    def keys(s):  # (keys_last, the slots axis of a layer's keys)
        plan = s.plan([3], params)
        cache = s._program("init", (), plan, None)(0).cache
        k = cache.k[0] if unroll else cache.k[0, 0]
        return cache.keys_last, k.shape.index(plan.cache_len) - k.ndim

    last = sampler()
    want = last.generate_ids(prompts, params)
    assert keys(last) == (True, -1)
    monkeypatch.setattr(loop, "cache_keys_last", lambda mesh: False)
    other = sampler()
    assert other.generate_ids(prompts, params) == want
    assert keys(other) == (False, -2)


def test_decode_windows_are_those_worth_a_program():
    from s2jax.sampling.buckets import BucketPlan, slot_cost

    def windows(cost, max_len=4096, longest=16, new=128):
        return BucketPlan.make([longest], 1, new, max_batch=64, max_len=max_len,
                               slot_cost=cost).windows()

    # attention is all (the default): every candidate, each at most 1.5x the one below
    assert windows(float("inf"), longest=1000, new=1000) == [
        16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
    assert windows(0.0) == [256]  # weights are all: one program
    # bench/process.py's 3.3M Llama (4 layers, 6 heads of 32): a slot costs 0.37% of a step
    cost = slot_cost(4, 6, 32, 3_344_064)
    assert windows(cost) == [96, 256]
    # SmolLM2-135M at 2k-token prompts: attention matters, each window saves >= 25% of a step
    cost = slot_cost(30, 9, 64, 134_515_008)  # 9 query heads
    w = windows(cost, longest=2000, new=512)
    assert w[-1] == 4096 and 3 <= len(w) < 17
    for small, big in zip(w, w[1:], strict=False):
        assert 1 + small * cost <= 0.75 * (1 + big * cost) + 1e-9


def test_chat_prompts_use_the_tokenizer_template(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    msgs = [{"role": "user", "content": "Alice flips the coin."}]
    expected = tok(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"]
    assert encode_prompts(tok, [msgs, "Alice flips the coin."], chat=True) == [expected] * 2
    assert tok.convert_ids_to_tokens(expected[-2]) == "<|assistant|>"
    raw = encode_prompts(tok, ["Alice flips"], chat=False)[0]
    assert raw == tok("Alice flips")["input_ids"]
    with pytest.raises(S2JaxError, match="prompt 0: a message list needs chat=True"):
        encode_prompts(tok, [msgs], chat=False)
    out = Sampler(model, tok)([msgs, "Alice flips the coin."], SamplingParams(max_new_tokens=5))
    assert out[0] == out[1] and out[0][0].num_tokens <= 5


def test_prompt_longer_than_max_len_is_an_error(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    with pytest.raises(S2JaxError, match="prompt 1 has 40 tokens; max_len=32"):
        Sampler(model, tok, max_len=32).generate_ids([[9] * 4, [9] * 40], SamplingParams())


def test_rows_near_max_len_stop_with_length(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    (sample, toks), = Sampler(model, tok, max_len=32).generate_ids(
        [[9] * 28], SamplingParams(max_new_tokens=50))[0]
    assert sample.num_tokens == len(toks) <= 4
    assert sample.finish_reason == "length" or toks[-1] == 7


def test_jax_devices_are_fake_cpu():
    assert len(jax.devices()) == 8
