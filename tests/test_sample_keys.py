"""A sample's random key depends only on (seed, prompt, sample index): a stored N=16 set holds
the N=4 run as its first 4 samples, whatever else shares the call."""

import json

import numpy as np
import pytest

import s2jax
from s2jax.core.text_generator import Sample, SamplingParams
from s2jax.methods.catalog import METHODS
from s2jax.methods.runner import run_program
from s2jax.run.stages import generate_stage
from s2jax.sampling import Sampler
from s2jax.tasks.toy.world import TASKS as TOY
from s2jax.toy.demo import base_model_dir


def _tokens(results):
    return [[toks for _, toks in row] for row in results]


@pytest.mark.slow
def test_first_samples_of_a_larger_n_and_other_calls_are_the_same_draws(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama2"), dtype="float32")
    rng = np.random.default_rng(0)
    prompts = [rng.integers(8, model.config.vocab_size, size=n).tolist() for n in (5, 9, 3, 7)]
    params = SamplingParams(n=4, temperature=1.0, top_k=50, max_new_tokens=10, seed=3)
    sampler = Sampler(model, tok, max_batch=16)
    four = _tokens(sampler.generate_ids(prompts, params))
    sixteen = _tokens(sampler.generate_ids(prompts, SamplingParams(
        **{**params.__dict__, "n": 16})))
    assert [row[:4] for row in sixteen] == four
    assert len({tuple(t) for t in sixteen[0]}) > 8  # the 16 are draws, not copies
    # a prompt's samples do not depend on the others in the call, nor on its position
    alone = _tokens(sampler.generate_ids([prompts[2], prompts[0]], params))
    assert alone == [four[2], four[0]]
    # first_sample: prompt i's samples start at that index (a later stage's path s)
    shifted = _tokens(sampler.generate_ids(prompts[:2], SamplingParams(
        **{**params.__dict__, "n": 2}), first_sample=[2, 1]))
    assert shifted == [sixteen[0][2:4], sixteen[1][1:3]]


def test_later_stages_continue_path_s_as_sample_s():
    calls = []

    def generate(prompts, params, first_sample=None):
        calls.append((len(prompts), params.n, first_sample))
        return [[Sample("same text", 2, "stop")] * params.n for _ in prompts]

    run_program(METHODS["s2a"], [{"question": "q1"}, {"question": "q2"}], generate,
                SamplingParams(n=3))
    # stage 1: n=3 per input; stage 2: one prompt per path, path s keyed as sample s, so two
    # paths that wrote the same text still draw independently
    assert calls == [(2, 3, None), (6, 1, [0, 1, 2, 0, 1, 2])]


@pytest.mark.slow
def test_a_stored_n16_generate_stage_holds_the_n4_run(tmp_path):
    model, tok = s2jax.load(base_model_dir())
    # 2 inputs, 16 rows a batch, 16 tokens: 25 programs compiled instead of 43 (3, 32, 32)
    sampler = Sampler(model, tok, max_batch=16, max_len=512)
    toy = TOY["sycophancy"]  # S2A: two stages, so later-stage keys are covered too
    examples = toy.task.synthesize(2, 7)
    rows = {}
    for n in (16, 4):
        params = SamplingParams(n=n, temperature=2.0, top_k=40, max_new_tokens=16, seed=1)
        rows[n] = generate_stage(toy.method, toy.task, examples, sampler, params,
                                 path=tmp_path / f"n{n}.jsonl", key=f"n{n}", shard_size=2)
    assert [r["samples"][:4] for r in rows[16]] == [r["samples"] for r in rows[4]]
    paths = {json.dumps(s) for r in rows[16] for s in r["samples"]}
    assert len(paths) > 3  # draws, not copies
