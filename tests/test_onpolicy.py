"""On-policy distillation: rounds of student samples scored by a frozen teacher; the sampler
takes new weights without recompiling; a run stopped between rounds resumes to the same
weights."""

import json

import jax
import numpy as np
import pytest

import s2jax
from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.sampling import Sampler
from s2jax.train.config import LORA_TARGETS, KDConfig, LoraConfig, TrainConfig
from s2jax.train.onpolicy import OnPolicyConfig, distill_on_policy, round_prompts

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "star", "coin", "fox"]


def _pool(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    pool = []
    for i in range(n):
        question = f"Item {i}: " + " ".join(rng.choice(WORDS, 2))
        hint = "Say: " + " ".join(rng.choice(WORDS, 3)) + ". "
        pool.append({"id": str(i), "messages": [{"role": "user", "content": question}],
                     "teacher_messages": [{"role": "user", "content": hint + question}]})
    return pool


def test_sampler_takes_new_weights_without_recompiling(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    sampler = Sampler(model, tok, max_batch=8)
    prompts = [p["messages"] for p in _pool(4)]
    params = SamplingParams(max_new_tokens=8)
    first = [s[0].text for s in sampler(prompts, params)]
    compiles = sampler.compile_count
    sampler.set_params(jax.tree.map(lambda w: -w, model.params()))
    second = [s[0].text for s in sampler(prompts, params)]
    assert sampler.compile_count == compiles and compiles > 0
    assert first != second  # the new weights are the ones sampled from


def _run(hf_checkpoint, run_dir, rounds, lora=0):
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    sampler = Sampler(model, tok, max_batch=8)
    train = TrainConfig(steps=2, seq_len=64, batch_size=4, learning_rate=3e-3, progress=False,
                        schedule="constant", kd=KDConfig("reverse_kl", teacher_seq_len=96),
                        lora=LoraConfig(rank=lora))
    config = OnPolicyConfig(rounds=rounds, prompts_per_round=4,
                            sampling=SamplingParams(temperature=1.0, max_new_tokens=6))
    lines = []
    distill_on_policy(model, tok, _pool(10), config, train, run_dir, sampler=sampler,
                      log=lines.append)
    return model, lines


@pytest.mark.slow
@pytest.mark.parametrize("lora", [0, 2], ids=["full", "lora"])
def test_rounds_resume_to_the_weights_of_an_uninterrupted_run(hf_checkpoint, tmp_path, lora):
    # with LoRA the adapters carry over: a resumed run reads the last round's adapter/ back
    whole, lines = _run(hf_checkpoint, tmp_path / "whole", rounds=2, lora=lora)
    assert len(lines) == 2
    start, _ = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    for r in range(2):
        rows = [json.loads(x) for x in (tmp_path / f"whole/round_{r:03d}/samples.jsonl")
                .read_text().splitlines()]
        assert [row["id"] for row in rows] == [p["id"] for p in round_prompts(
            _pool(10), OnPolicyConfig(rounds=2, prompts_per_round=4), r)]
        metrics = [json.loads(x) for x in (tmp_path / f"whole/round_{r:03d}/train/metrics.jsonl")
                   .read_text().splitlines()]
        assert all(m["loss"] > 0 for m in metrics)  # the teacher reads another context
    # stopped after round 1, then run again for both rounds: round 1 is not redone
    _run(hf_checkpoint, tmp_path / "split", rounds=1, lora=lora)
    stamp = (tmp_path / "split/round_000/samples.jsonl").stat().st_mtime_ns
    resumed, lines = _run(hf_checkpoint, tmp_path / "split", rounds=2, lora=lora)
    assert len(lines) == 1 and (tmp_path / "split/round_000/samples.jsonl").stat() \
        .st_mtime_ns == stamp
    changed = set()
    for name, value in whole.params().items():
        a, b = np.asarray(value), np.asarray(resumed.param(name).get_value())
        if np.abs(a - np.asarray(start.param(name).get_value())).max() > 0:
            changed.add(name)
        np.testing.assert_array_equal(a, b, err_msg=name)
    # LoRA moves the seven projections it adapts (merged in); norms, biases, embeddings stay
    adapted = {f"layers.{t}" for t in LORA_TARGETS}
    assert changed == (adapted if lora else set(whole.params()))


def test_on_policy_needs_a_divergence_and_steps(hf_checkpoint, tmp_path):
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    with pytest.raises(S2JaxError, match="expected a divergence"):
        distill_on_policy(model, tok, _pool(2), OnPolicyConfig(), TrainConfig(steps=2),
                          tmp_path, sampler=None)
    with pytest.raises(S2JaxError, match="rounds=0"):
        OnPolicyConfig(rounds=0)
